"""Qt widgets: the only place that imports qtpy or magicgui."""

# the reader's slow after-open work (a large mask's id check) runs in thread workers once a dock exists
from .progressive import install_background_runner as _install_background_runner  # noqa: E402

_install_background_runner()
