/**
 * The user settings (schema/plugin.json) as a typed, live object.
 *
 * The schema holds the defaults and the bounds a user may type; the limits
 * of a request (most tokens, most alternatives) come from the server's
 * `GET codecomp/status` (`requestLimits`), never from a copy here.
 */
import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import { Signal } from '@lumino/signaling';

import { DEFAULT_SETTINGS, type ICodecompSettings, type IServerStatus } from './tokens';

/** The settings in a composite object, invalid values replaced by the defaults. */
export function readSettings(composite: Record<string, unknown>): ICodecompSettings {
  const integer = (value: unknown, fallback: number, min: number): number =>
    typeof value === 'number' && Number.isFinite(value)
      ? Math.max(min, Math.round(value))
      : fallback;
  const optional = <T>(value: unknown, read: (v: number) => T): T | null =>
    typeof value === 'number' && Number.isFinite(value) ? read(value) : null;
  const flag = (value: unknown, fallback: boolean): boolean =>
    typeof value === 'boolean' ? value : fallback;
  const d = DEFAULT_SETTINGS;
  return {
    enabled: flag(composite.enabled, d.enabled),
    inline: flag(composite.inline, d.inline),
    mode: composite.mode === 'block' ? 'block' : 'line',
    adaptiveDebounce: flag(composite.adaptiveDebounce, d.adaptiveDebounce),
    debounceMs: integer(composite.debounceMs, d.debounceMs, 0),
    maxTokens: optional(composite.maxTokens, v => Math.max(1, Math.round(v))),
    minConfidence: optional(composite.minConfidence, v => Math.min(1, Math.max(0, v))),
    warm: flag(composite.warm, d.warm),
    alternatives: integer(composite.alternatives, d.alternatives, 1),
    tabItems: flag(composite.tabItems, d.tabItems)
  };
}

/** What one request asks for, within the server's limits (when it told them). */
export function requestLimits(
  settings: ICodecompSettings,
  server: IServerStatus | null,
  wanted: { n: number; maxTokens: number | null }
): { n: number; maxTokens: number | undefined } {
  const limits = server?.limits;
  const n = Math.max(1, Math.min(wanted.n, limits?.alternatives ?? wanted.n));
  const asked = wanted.maxTokens ?? settings.maxTokens;
  const maxTokens = asked === null ? undefined : Math.min(asked, limits?.max_new_tokens ?? asked);
  return { n, maxTokens };
}

/** The confidence threshold of ghost text: the user's, else the server's, else 0. */
export function minConfidence(settings: ICodecompSettings, server: IServerStatus | null): number {
  const value = settings.minConfidence ?? server?.min_confidence;
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

export class SettingsModel {
  get current(): ICodecompSettings {
    return this._current;
  }

  get changed(): Signal<this, ICodecompSettings> {
    return this._changed;
  }

  /** Follow a loaded settings object. */
  connect(settings: ISettingRegistry.ISettings): void {
    this._load(settings);
    settings.changed.connect(this._load, this);
  }

  private _load(settings: ISettingRegistry.ISettings): void {
    this._current = readSettings(settings.composite as Record<string, unknown>);
    this._changed.emit(this._current);
  }

  private _current: ICodecompSettings = { ...DEFAULT_SETTINGS };
  private _changed = new Signal<this, ICodecompSettings>(this);
}
