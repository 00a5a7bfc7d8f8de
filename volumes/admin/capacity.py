"""The capacity confirmation of a storage location's console form (a pool, a backup point): a
capacity below what the location already holds is refused on the form unless `confirm_capacity` is
ticked, and the confirmed save warns that new work is refused until that changes."""

from __future__ import annotations

from django import forms
from django.contrib import messages

from sharestore.core.console import human_bytes


class CapacityConfirmationForm(forms.ModelForm):
    """A storage location's form: the capacity is required on an edit, and one below what is held needs a tick."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "capacity" in self.fields and self.instance.pk is not None:
            self.fields["capacity"].required = True
        # Set by hold_below: the sizes, readable, under the names the refusal and the warning use.
        self.below_held = None

    def hold_below(self, refusal: str, **sizes) -> None:
        """The new capacity is below what the location holds: `sizes` (bytes, under `refusal`'s names)
        are kept for the save's warning, and the form refuses unless the confirmation is ticked."""
        self.below_held = {name: human_bytes(size) for name, size in sizes.items()}
        if not self.cleaned_data.get("confirm_capacity"):
            self.add_error("capacity", refusal % self.below_held)


class CapacityConfirmationAdmin:
    """Mixed into a storage location's admin: no confirmation when adding (nothing is held yet), and
    the warning after a confirmed save below what is held."""

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            fieldsets[0][1]["fields"] = [f for f in fieldsets[0][1]["fields"] if f != "confirm_capacity"]
        return fieldsets

    def warn_below_held(self, request, obj, form, warning: str) -> None:
        """After a confirmed save below what is held: `warning` with the location's name and the sizes."""
        if form.below_held:
            self.message_user(request, warning % {"name": obj.name, **form.below_held}, messages.WARNING)
