/**
 * jupyter-codecomp: ghost text and Tab items from a local code model.
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { CodecompApi } from './api';
import { SuggestionCache } from './cache';
import { RequestBuilder } from './context';
import { CodecompInlineProvider } from './inline';
import { addAcceptCommands } from './partial';
import { isNotebookEnabled } from './metadata';
import { SettingsModel } from './settings';
import { StatusModel } from './status';
import { CodecompStatusItem } from './statusbar';
import { CodecompTabProvider } from './tab';
import { addToggleCommand, ToggleButtonExtension } from './toggle';
import { CodecompTransport } from './transport';
import { PromptWarmer } from './warm';

export * from './tokens';

const PLUGIN_ID = 'jupyter-codecomp:plugin';

/** JupyterLab's completer settings, and its default time budget per provider. */
const COMPLETER_MANAGER_ID = '@jupyterlab/completer-extension:manager';
const DEFAULT_PROVIDER_TIMEOUT_MS = 1000;

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Ghost text and Tab completions from a local code model (jupyter-codecomp).',
  autoStart: true,
  requires: [ICompletionProviderManager],
  optional: [ISettingRegistry, INotebookTracker, IStatusBar, ICommandPalette, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    manager: ICompletionProviderManager,
    registry: ISettingRegistry | null,
    tracker: INotebookTracker | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    translator: ITranslator | null
  ): void => {
    const trans = (translator ?? nullTranslator).load('jupyter-codecomp');
    const api = new CodecompApi(app.serviceManager.serverSettings);
    const transport = new CodecompTransport(api);
    const status = new StatusModel(api);
    const settings = new SettingsModel();
    const builder = new RequestBuilder();
    const cache = new SuggestionCache();
    const options = { transport, status, settings, builder, cache };

    const inline = new CodecompInlineProvider(options);
    manager.registerInlineProvider(inline);
    addAcceptCommands(app, inline, builder, trans);
    let providerTimeout = DEFAULT_PROVIDER_TIMEOUT_MS;
    manager.registerProvider(
      new CodecompTabProvider({ ...options, providerTimeout: () => providerTimeout })
    );

    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then(loaded => settings.connect(loaded))
        .catch(() => undefined);
      // The Tab provider answers within the completer's own time budget.
      registry
        .load(COMPLETER_MANAGER_ID)
        .then(loaded => {
          const read = () => {
            const value = loaded.composite.providerTimeout;
            providerTimeout =
              typeof value === 'number' && value > 0 ? value : DEFAULT_PROVIDER_TIMEOUT_MS;
          };
          read();
          loaded.changed.connect(read);
        })
        .catch(() => undefined);
    }

    /** Why completion is off for the user right now, or null. */
    const offReason = (): string | null => {
      if (!settings.current.enabled) {
        return trans.__('turned off in the settings');
      }
      const current = app.shell.currentWidget;
      if (current instanceof NotebookPanel && !isNotebookEnabled(current.model)) {
        return trans.__('turned off for this notebook');
      }
      return null;
    };

    if (tracker) {
      new PromptWarmer({ tracker, transport, status, settings, builder });
      const command = addToggleCommand(app.commands, tracker, trans, () => {
        inline.resetPolicy();
        cache.clear();
      });
      palette?.addItem({ command, category: trans.__('Code Completion') });
      app.docRegistry.addWidgetExtension('Notebook', new ToggleButtonExtension(app.commands));
    }

    if (statusBar) {
      const item = new CodecompStatusItem(status, offReason, translator ?? nullTranslator);
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: 5,
        isActive: () => item.isActive,
        activeStateChanged: item.activeStateChanged
      });
      const refresh = () => item.update();
      settings.changed.connect(refresh);
      app.shell.currentChanged?.connect(refresh);
      tracker?.widgetAdded.connect((_, panel) => {
        panel.context.ready
          .then(() => panel.model?.metadataChanged.connect(refresh))
          .catch(() => undefined);
      });
    }

    status.start();
  }
};

export default plugin;
