"""Hand a box's new lease to the controller by its REST API (PUT
/api/v1/homenets/<name>/uplinks/<uplink> {"address": ...}, the operator's token): the
controller stores it and changes only that homenet's edge flows. Used when the OVSDB
manager runs beside ryu-manager rather than inside it."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from msp_controller.box.manager import LeaseListener

TIMEOUT_S = 5.0


class ReportError(RuntimeError):
    pass


def rest_reporter(base_url: str, token: str, cafile: str | None = None) -> LeaseListener:
    """A LeaseListener that PUTs each new address to the controller at base_url."""
    context = ssl.create_default_context(cafile=cafile) if base_url.startswith("https:") else None

    def report(homenet: str, uplink: str, address: str | None) -> None:
        path = "/api/v1/homenets/{}/uplinks/{}".format(urllib.parse.quote(homenet, safe=""),
                                                        urllib.parse.quote(uplink, safe=""))
        request = urllib.request.Request(base_url.rstrip("/") + path, method="PUT",
                                         data=json.dumps({"address": address}).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as answer:
                answer.read()
        except urllib.error.HTTPError as err:
            raise ReportError(f"{path}: {err.code} {err.read()[:200]!r}") from None
        except OSError as err:
            raise ReportError(f"{path}: {err}") from None

    return report
