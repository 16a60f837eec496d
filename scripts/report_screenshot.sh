#!/usr/bin/env bash
# Renders a mulli HTML report in headless Chromium and saves a PNG screenshot (the README's
# image: docs/images/report.png). Installs Debian's chromium if it is missing.
#
#   bash scripts/report_screenshot.sh runs/flywheel/report.html docs/images/report.png
set -euo pipefail
report="${1:-runs/flywheel/report.html}"
png="${2:-docs/images/report.png}"
height="${3:-2600}"
[ -f "$report" ] || { echo "no report at $report (run: cargo run --release -- flywheel)" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "installing chromium (Debian)..." >&2
  (apt-get install -y -q chromium >/dev/null 2>&1 || sudo -n apt-get install -y -q chromium >/dev/null 2>&1) \
    || { echo "cannot install chromium; install it and rerun" >&2; exit 1; }
  browser=$(command -v chromium)
fi
mkdir -p "$(dirname "$png")"
abs=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size=1200,"$height" --screenshot="$png" "file://$abs" 2>/dev/null
echo "wrote $png"
