"""The console's form and admin of a storage location (a pool, a backup point): the location's
service checks the form before anything is saved and writes the row; a capacity below what the
location already holds is refused on the form unless `confirm_capacity` is ticked, and the
confirmed save warns that new work is refused until that changes."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from sharestore.core.console import (
    EditableConsoleAdmin,
    console_actor,
    human_bytes,
    neutral_language,
    service_error_to_form,
    usage_table,
)


class LocationForm(forms.ModelForm):
    """A storage location's form, checked by its service; an edit needs a capacity, one below what is held a tick."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "capacity" in self.fields and self.instance.pk is not None:
            self.fields["capacity"].required = True
        # Set by hold_below: the sizes, readable, under the names the refusal and the warning use.
        self.below_held = None

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            if self.instance.pk is None:
                self.check_create(data)
            else:
                self.check_update(self._meta.model.objects.get(pk=self.instance.pk), data)
        except errors.ServiceError as exc:
            self.refuse(exc)
        return data

    def check_create(self, data) -> None:
        """The service's checks of a new location (raises its ServiceError)."""
        raise NotImplementedError

    def check_update(self, original, data) -> None:
        """The service's checks of an edit of `original`, the row as stored (raises its ServiceError)."""
        raise NotImplementedError

    def refuse(self, exc: errors.ServiceError) -> None:
        """A refusal of the service, on the field it names."""
        service_error_to_form(self, exc)

    def hold_below(self, refusal: str, **sizes) -> None:
        """The new capacity is below what the location holds: `sizes` (bytes, under `refusal`'s names)
        are kept for the save's warning, and the form refuses unless the confirmation is ticked."""
        self.below_held = {name: human_bytes(size) for name, size in sizes.items()}
        if not self.cleaned_data.get("confirm_capacity"):
            self.add_error("capacity", refusal % self.below_held)


class LocationAdmin(EditableConsoleAdmin):
    """A storage location's admin: the service writes the row; the usage table on its page."""

    # Lazy: "... %(name)s ...", with the sizes the form held (LocationForm.hold_below).
    below_held_warning: str
    search_fields = ("name", "uuid", "path")

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            # Nothing is held by a new location: no capacity to confirm.
            fieldsets[0][1]["fields"] = [f for f in fieldsets[0][1]["fields"] if f != "confirm_capacity"]
        return fieldsets

    @admin.display(description=_("usage"))
    def usage(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return usage_table(self.usage_rows(obj))

    def usage_rows(self, obj) -> list:
        """The usage table's (label, value) rows of a saved location."""
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        if change:
            with neutral_language():
                self.update(console_actor(request), obj, form.changes())
            if form.below_held:
                warning = str(self.below_held_warning) % {"name": obj.name, **form.below_held}
                self.message_user(request, warning, messages.WARNING)
            return
        self.create(request, obj, form.cleaned_data)
        # The admin's redirect and change log need the row the service created (create() copied it).
        obj._state.adding = False

    def update(self, actor: str, obj, changes: dict) -> None:
        """Write the edit through the service (in the site language)."""
        raise NotImplementedError

    def create(self, request, obj, data) -> None:
        """Create the location through the service and copy the new row's keys onto `obj`."""
        raise NotImplementedError
