#!/usr/bin/env bash
# Debian packages the tests use as real components: Prometheus (with promtool), Alertmanager (with
# amtool), node exporter (the training metrics' textfile collector), Chromium (dashboard page test) and
# bubblewrap (the code-reward sandbox's outer layer).
# Installs only what is missing; blocks the packages' services from starting (the tests start their own).
set -euo pipefail
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
command -v chromium >/dev/null || need+=(chromium)
command -v bwrap >/dev/null || need+=(bubblewrap)  # the code-reward sandbox's outer layer
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# policy-rc.d exit 101: "action forbidden", so dpkg does not start prometheus & co. as services
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
