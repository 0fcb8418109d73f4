#!/usr/bin/env bash
# Installs everything the project needs on Debian 12, as root. Idempotent: each step
# checks first, so a second run does nothing and needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(openvswitch-switch mininet bird2 iperf3 tcpdump iputils-ping ethtool
                 nftables iproute2 procps python3-venv udhcpc  # udhcpc: a stock DHCP client for hosts
                 dnsmasq-base  # dnsmasq: the emulated ISPs' DHCP servers (topologies/isp_dhcp.py)
                 chromium)  # chromium: the dashboard's browser test
VENV=${MSP_VENV:-.venv}

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install: Debian packages: ${missing[*]}"
    apt-get update -q
    # The packages' own services (ovs, bird) are not used: each box starts its own daemons.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "install: virtual environment $VENV"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import ryu, eventlet, networkx, webob, pytest, mininet, openapi_spec_validator, prometheus_client, hypothesis, playwright' 2>/dev/null; then
    echo "install: Python packages (Ryu 4.34 needs an old setuptools and no build isolation)"
    "$VENV/bin/pip" install -q "setuptools<68" pbr wheel
    "$VENV/bin/pip" install -q --no-build-isolation ryu==4.34 eventlet==0.33.3
    "$VENV/bin/pip" install -q networkx webob prometheus-client pytest hypothesis mininet==2.3.0.dev6 openapi-spec-validator
    # Playwright drives Debian's chromium (tests/integration/test_dashboard.py); it downloads no browser.
    "$VENV/bin/pip" install -q playwright
fi
if ! "$VENV/bin/python" -c 'import msp_controller' 2>/dev/null || [ setup.cfg -nt "$VENV/.msp-installed" ]; then
    echo "install: msp_controller (editable)"
    "$VENV/bin/pip" install -q --no-build-isolation --no-deps -e .
    touch "$VENV/.msp-installed"
fi

# Ryu 4.34's ryu.app.wsgi (imported by ryu-manager itself) wants eventlet.wsgi.ALREADY_HANDLED,
# which no eventlet that runs on Python 3.11 has. A .pth file restores the name at start-up,
# so plain `ryu-manager` works in this environment without patching installed files.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
COMPAT="$SITE/msp_eventlet_compat.pth"
if [ ! -f "$COMPAT" ]; then
    echo "install: $COMPAT"
    echo 'import os; exec("try:\n import eventlet.wsgi as w\n if not hasattr(w, \"ALREADY_HANDLED\"): w.ALREADY_HANDLED = []\nexcept ImportError:\n pass") if os.environ.get("MSP_NO_EVENTLET_COMPAT") is None else None' > "$COMPAT"
fi
