"""URL configuration: the /v1/volume/share/ API, the admin console and the OpenAPI schema."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
    path("v1/volume/share/backup/", include("backups.api.urls")),
    path("v1/volume/share/", include("volumes.api.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]

handler400 = "sharestore.api.exception_handler.api_bad_request"
handler404 = "sharestore.api.exception_handler.api_not_found"
handler500 = "sharestore.api.exception_handler.api_server_error"
