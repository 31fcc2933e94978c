"""The Jupyter server extension: configuration, background model loading, routes."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp

from ..config import CodecompConfig
from .completer import Completer
from .handlers import handlers


class CodecompExtension(ExtensionApp):
    name = "jupyter_codecomp"
    classes = [CodecompConfig]
    load_other_extensions = True

    def initialize_settings(self):
        settings = CodecompConfig(parent=self.serverapp, config=self.serverapp.config)
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

    def initialize_handlers(self):
        self.handlers.extend(handlers)

    async def stop_extension(self):
        await self.completer.close()
