"""Settings of the API read benchmark (bench/api_read.py): production settings, plus the bare views'
URLconf. Not used outside the benchmark."""

from sharestore.settings import *  # noqa: F403

ROOT_URLCONF = "_api_read_urls"
