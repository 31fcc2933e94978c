/**
 * The user settings (schema/plugin.json) as a typed, live object.
 */
import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import { Signal } from '@lumino/signaling';

import { DEFAULT_SETTINGS, type ICodecompSettings } from './tokens';

export class SettingsModel {
  get current(): ICodecompSettings {
    return this._current;
  }

  get changed(): Signal<this, ICodecompSettings> {
    return this._changed;
  }

  /** Follow a loaded settings object. */
  connect(settings: ISettingRegistry.ISettings): void {
    this._settings = settings;
    this._load(settings);
    settings.changed.connect(this._load, this);
  }

  /** Change one setting (persists through the registry when connected). */
  async set<K extends keyof ICodecompSettings>(
    name: K,
    value: ICodecompSettings[K]
  ): Promise<void> {
    if (this._settings) {
      await this._settings.set(name, value);
    } else {
      this._current = { ...this._current, [name]: value };
      this._changed.emit(this._current);
    }
  }

  private _load(settings: ISettingRegistry.ISettings): void {
    const composite = settings.composite as Partial<ICodecompSettings>;
    const number = (value: unknown, fallback: number, min: number, max: number) =>
      typeof value === 'number' && Number.isFinite(value)
        ? Math.min(max, Math.max(min, Math.round(value)))
        : fallback;
    this._current = {
      enabled: composite.enabled ?? DEFAULT_SETTINGS.enabled,
      inline: composite.inline ?? DEFAULT_SETTINGS.inline,
      mode: composite.mode === 'block' ? 'block' : 'line',
      debounceMs: number(composite.debounceMs, DEFAULT_SETTINGS.debounceMs, 0, 5000),
      maxTokens: number(composite.maxTokens, DEFAULT_SETTINGS.maxTokens, 1, 512),
      alternatives: number(composite.alternatives, DEFAULT_SETTINGS.alternatives, 1, 5),
      tabItems: composite.tabItems ?? DEFAULT_SETTINGS.tabItems
    };
    this._changed.emit(this._current);
  }

  private _current: ICodecompSettings = { ...DEFAULT_SETTINGS };
  private _settings: ISettingRegistry.ISettings | null = null;
  private _changed = new Signal<this, ICodecompSettings>(this);
}
