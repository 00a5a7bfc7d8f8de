"""JSON rendering of the envelope."""

from rest_framework.renderers import JSONRenderer


class EnvelopeJSONRenderer(JSONRenderer):
    """Renders UTF-8 JSON without ASCII escapes, so Chinese names and messages stay readable."""

    ensure_ascii = False
    charset = "utf-8"
