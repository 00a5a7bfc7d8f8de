"""gunicorn settings (`gunicorn -c python:sharestore.gunicorn_conf sharestore.wsgi`): gunicorn's own
error and access lines as the same JSON objects the application logs (time, level, logger, message,
request_id), so one log pipeline reads them all. Bind address and workers stay on the command line."""

import logging
import os

# Python warnings (e.g. WhiteNoise on a missing static root) become log records too, not bare stderr.
logging.captureWarnings(True)

accesslog = "-"
# The request id the application answered with (X-Request-ID) ends each access line.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "sharestore.monitoring.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": os.environ.get("SHARESTORE_LOG_FORMAT", "json"),
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "py.warnings": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
