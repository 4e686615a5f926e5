#!/usr/bin/env bash
# Make sure a virtual X display (Xvfb) and Mesa's software OpenGL are available.
# napari's canvas needs a real X display with OpenGL; Qt's "offscreen" platform is not enough.
set -euo pipefail
need=()
command -v xvfb-run >/dev/null 2>&1 || need+=(xvfb xauth)
# libGL (Mesa) and the X/xcb libraries Qt's xcb platform plugin loads.
for lib in libGL.so.1 libEGL.so.1 libxkbcommon-x11.so.0 libxcb-icccm.so.4 libxcb-image.so.0 \
           libxcb-keysyms.so.1 libxcb-randr.so.0 libxcb-render-util.so.0 libxcb-xinerama.so.0 \
           libxcb-shape.so.0 libxcb-cursor.so.0 libfontconfig.so.1 libdbus-1.so.3; do
  if ! ldconfig -p 2>/dev/null | grep -q "$lib"; then need+=(MISSING_LIBS); break; fi
done
if [ "${1:-}" = "--check-only" ]; then
  if [ -z "${DISPLAY:-}" ]; then
    echo "No DISPLAY set: 'make demo' opens a napari window and needs a desktop session." >&2
    echo "On a headless machine run it as: xvfb-run -a make demo" >&2
  fi
  exit 0
fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
pkgs="xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libxkbcommon-x11-0 libxcb-icccm4 \
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 \
libxcb-cursor0 libxcb-xfixes0 libxcb-xkb1 libfontconfig1 libdbus-1-3 x11-utils"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing the virtual display (Xvfb) and Mesa OpenGL packages..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
else
  echo "The GUI tests need a virtual X display and Mesa OpenGL. Install them with:" >&2
  echo "  sudo apt-get install $pkgs" >&2
  exit 1
fi
