"""jupyter-codecomp: local code completion for Jupyter notebooks."""

try:
    from ._version import __version__
except ImportError:  # a source tree that was never built
    __version__ = "0.0.0+unknown"


def _jupyter_server_extension_points():
    from .server.extension import CodecompExtension

    return [{"module": "jupyter_codecomp", "app": CodecompExtension}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyter-codecomp"}]


def load_ipython_extension(ipython):
    from .kernel.magic import CompleteMagics

    ipython.register_magics(CompleteMagics(ipython))
