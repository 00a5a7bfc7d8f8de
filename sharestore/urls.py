"""URL configuration: the /v1/volume/share/ API, its pool and backup-point extensions, the admin
console, the OpenAPI schema and its offline docs (Swagger UI, Redoc), health and metrics."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView, TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from sharestore.monitoring import views as monitoring

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    # Browsers ask every site for /favicon.ico whatever the page links: answer with the icon, not a 404
    # (a temporary redirect: browsers would keep a permanent one for ever).
    path("favicon.ico", RedirectView.as_view(url=static("sharestore/favicon.svg")), name="favicon"),
    path("v1/volume/share/backup/", include("backups.api.urls")),
    path("v1/volume/share/quota/", include("volumes.api.quota_urls")),
    path("v1/volume/share/", include("volumes.api.urls")),
    path("v1/pool/share/", include("volumes.api.pool_urls")),
    path("v1/volume/internal/backuppoint/", include("backups.api.point_urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", monitoring.healthz, name="healthz"),
    path("readyz", monitoring.readyz, name="readyz"),
    path("metrics", monitoring.metrics_view, name="metrics"),
]

handler400 = "sharestore.api.exception_handler.api_bad_request"
handler404 = "sharestore.api.exception_handler.api_not_found"
handler500 = "sharestore.api.exception_handler.api_server_error"
