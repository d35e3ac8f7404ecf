"""The browser side's Python end: where the JavaScript bundle is, and how a page gets its options.

The bundle (``usage-ping-tracking.js``) is built from ``frontend/`` by ``make js`` into this
package's ``static`` directory; the host serves it. A page gives it options (the collector, the
app id, the standard context's defaults) in a JSON element that :func:`config_script` renders,
from :meth:`Tracking.frontend_options <usage_ping.tracking.Tracking.frontend_options>`::

    options = tracking.frontend_options(user=current_user, project=project)
    head = config_script(options) + '<script src="/static/usage-ping-tracking.js"></script>'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["BUNDLE_NAME", "CONFIG_ELEMENT_ID", "bundle_path", "config_script"]

BUNDLE_NAME = "usage-ping-tracking.js"
"""The file name of the JavaScript bundle (in the package's ``tracking/static`` directory)."""
CONFIG_ELEMENT_ID = "usage-ping-tracking-config"
"""The id of the JSON ``<script>`` element the bundle reads its options from."""


def bundle_path() -> Path:
    """Where the built JavaScript bundle is (it exists once ``make js`` has run)."""
    return Path(str(resources.files(__package__ or "usage_ping.tracking") / "static" / BUNDLE_NAME))


def config_script(options: Mapping[str, Any] | None) -> str:
    """The ``<script type="application/json">`` element holding the bundle's options.

    ``<``, ``>`` and ``&`` are escaped as JSON unicode escapes, so no value (a plan name, say)
    can close the element. None (tracking off) gives an empty string: no tracking on the page.
    """
    if options is None:
        return ""
    text = json.dumps(dict(options), sort_keys=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{CONFIG_ELEMENT_ID}">{text}</script>'
