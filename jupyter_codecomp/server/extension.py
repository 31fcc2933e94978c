"""The Jupyter server extension: configuration, background model loading, routes.

Whatever fails at start (a bad option, a missing model) is reported by /codecomp/status and the
routes as `failed` with its fix; the server itself keeps running and stops cleanly."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import TraitError

from ..completion.service import ServiceLoader
from ..config import CodecompConfig
from ..errors import CodecompError
from .completer import Completer
from .handlers import handlers


class CodecompExtension(ExtensionApp):
    name = "jupyter_codecomp"
    classes = [CodecompConfig]
    load_other_extensions = True
    completer: Completer | None = None

    def initialize_settings(self):
        try:
            settings = CodecompConfig(parent=self.serverapp, config=self.serverapp.config)
        except TraitError as exc:
            self._start_failed(exc)
            return
        self.completer = Completer(settings, self.serverapp)
        self.settings["codecomp"] = self.completer
        if settings.enabled:
            # The server starts at once; the model loads behind it and /codecomp/status tells.
            self.completer.loader.start()
        self.log.info(
            "codecomp: model %s (cache %s), device %s, %s",
            settings.model, settings.cache_dir, settings.device,
            "enabled" if settings.enabled else "disabled",
        )

    def _start_failed(self, exc: TraitError) -> None:
        """A bad option: every route answers `failed` naming it (not a server that will not
        stop, nor routes that 404). The defaults stand in for the settings; nothing loads."""
        error = CodecompError(f"the configuration is invalid: {exc}",
                              fix="correct the CodecompConfig option and restart the server")
        self.log.error("codecomp: %s", error)
        settings = CodecompConfig()
        loader = ServiceLoader(settings.service_settings())
        loader.state, loader.error = "failed", error
        self.completer = Completer(settings, self.serverapp, loader)
        self.settings["codecomp"] = self.completer

    def initialize_handlers(self):
        self.handlers.extend(handlers)

    async def stop_extension(self):
        if self.completer is not None:
            await self.completer.close()
