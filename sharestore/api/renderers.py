"""JSON rendering of the envelope."""

import orjson
from rest_framework.renderers import JSONRenderer


class EnvelopeJSONRenderer(JSONRenderer):
    """Renders UTF-8 JSON without ASCII escapes, so Chinese names and messages stay readable."""

    ensure_ascii = False
    charset = "utf-8"


class FastEnvelopeJSONRenderer(EnvelopeJSONRenderer):
    """The same bytes as EnvelopeJSONRenderer, through orjson, for bodies of plain JSON types (str,
    int, float, bool, None, dict with str keys, list): the read endpoints. Anything else (or an indent
    asked for) falls back to the standard renderer."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if renderer_context and self.get_indent(accepted_media_type, renderer_context):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            body = orjson.dumps(
                data,
                option=orjson.OPT_PASSTHROUGH_DATACLASS
                | orjson.OPT_PASSTHROUGH_DATETIME
                | orjson.OPT_PASSTHROUGH_SUBCLASS,
            )
        except TypeError:
            return super().render(data, accepted_media_type, renderer_context)
        # As DRF's renderer: U+2028/U+2029 escaped (valid JSON, but not valid JavaScript).
        if b"\xe2\x80\xa8" in body or b"\xe2\x80\xa9" in body:
            body = body.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
        return body
