#!/usr/bin/env python
"""Django's command-line utility for sharestore (the installed package offers it as `sharestore`)."""

from sharestore.manage import main

if __name__ == "__main__":
    main()
