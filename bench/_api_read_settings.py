"""Settings of the API read benchmark (bench/api_read.py): production settings, plus the bare views'
URLconf. Not used outside the benchmark."""

import os

from sharestore import settings as production

# Every setting of production, as it is.
globals().update({name: value for name, value in vars(production).items() if name.isupper()})

ROOT_URLCONF = "_api_read_urls"

# `bench/api_read.py --server-side-binding`: psycopg binds parameters on the server, which lets it
# prepare a statement it has run 5 times on a connection (measured against the default, client-side).
if os.environ.get("BENCH_SERVER_SIDE_BINDING") == "1":
    production.DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
