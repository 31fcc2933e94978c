/**
 * The status bar item (loading / ready / off / error, device, last latency)
 * and the details dialog it opens.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { ITranslator } from '@jupyterlab/translation';
import { nullTranslator } from '@jupyterlab/translation';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { codecompIcon } from './icons';
import type { StatusModel } from './status';
import type { DisplayState } from './tokens';

/** Why completion is off where the user is, or null when it is not. */
export type OffReason = () => string | null;

export class CodecompStatusItem extends Widget {
  constructor(
    private _model: StatusModel,
    private _offReason: OffReason,
    translator: ITranslator = nullTranslator
  ) {
    super();
    this._trans = translator.load('jupyter-codecomp');
    this.addClass('jp-codecomp-Status');
    this.node.title = this._trans.__('Code completion: click for details');
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    const icon = document.createElement('span');
    icon.className = 'jp-codecomp-Status-icon';
    codecompIcon.element({ container: icon, tag: 'span', stylesheet: 'statusBar' });
    this._label = document.createElement('span');
    this._label.className = 'jp-codecomp-Status-label';
    this.node.append(icon, this._label);
    this.node.addEventListener('click', () => void this.showDetails());
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        void this.showDetails();
      }
    });
    _model.changed.connect(this.update, this);
    this.update();
  }

  /** Emitted when the item should appear or disappear. */
  get activeStateChanged(): Signal<this, void> {
    return this._activeChanged;
  }

  /** Hidden while no server extension answers: nothing to say then. */
  get isActive(): boolean {
    return this._model.state !== 'missing';
  }

  /** The state shown: the server's, or `off` where the user turned it off. */
  get displayState(): DisplayState {
    const state = this._model.state;
    if (state !== 'missing' && state !== 'error' && this._offReason()) {
      return 'off';
    }
    return state;
  }

  update(): void {
    super.update();
    const state = this.displayState;
    const active = this.isActive;
    if (active !== this._wasActive) {
      this._wasActive = active;
      this._activeChanged.emit();
    }
    this.node.dataset.state = state;
    this._label.textContent = this._text(state);
  }

  /** The details dialog (also the place where a failure's fix is shown). */
  async showDetails(): Promise<void> {
    void this._model.refresh();
    const body = new Widget();
    body.addClass('jp-codecomp-Details');
    this._fillDetails(body.node);
    const listener = () => {
      body.node.textContent = '';
      this._fillDetails(body.node);
    };
    this._model.changed.connect(listener);
    try {
      await showDialog({
        title: this._trans.__('Code completion'),
        body,
        buttons: [Dialog.okButton({ label: this._trans.__('Close') })]
      });
    } finally {
      this._model.changed.disconnect(listener);
    }
  }

  private _text(state: DisplayState): string {
    const trans = this._trans;
    const server = this._model.server;
    switch (state) {
      case 'loading':
        return trans.__('Codecomp: loading…');
      case 'ready': {
        const parts = [server?.device || 'cpu'];
        const latency = this._model.lastLatencyMs ?? server?.latency_ms?.last ?? null;
        if (latency !== null && latency !== undefined) {
          parts.push(`${Math.round(latency)} ms`);
        }
        return trans.__('Codecomp: %1', parts.join(' · '));
      }
      case 'off':
        return trans.__('Codecomp: off');
      case 'error':
        return trans.__('Codecomp: error');
      default:
        return trans.__('Codecomp: …');
    }
  }

  private _fillDetails(node: HTMLElement): void {
    const trans = this._trans;
    const server = this._model.server;
    const rows: [string, string][] = [[trans.__('State'), this.displayState]];
    const off = this._offReason();
    if (off) {
      rows.push([trans.__('Off because'), off]);
    }
    if (server) {
      rows.push(
        [trans.__('Server state'), server.state],
        [trans.__('Model'), server.model || '-'],
        [trans.__('Device'), server.device || '-'],
        [trans.__('Execution providers'), (server.providers ?? []).join(', ') || '-'],
        [trans.__('Version'), server.version || '-']
      );
      const latency = server.latency_ms ?? { last: null, p50: null };
      rows.push([
        trans.__('Server latency (last / median)'),
        `${fmt(latency.last)} / ${fmt(latency.p50)}`
      ]);
    }
    rows.push([trans.__('Last completion in this page'), fmt(this._model.lastLatencyMs)]);
    if (typeof server?.fallback_reason === 'string' && server.fallback_reason) {
      rows.push([trans.__('Device fallback'), server.fallback_reason]);
    }
    if (server?.error) {
      rows.push([trans.__('Error'), server.error]);
    }
    if (this._model.lastError) {
      rows.push([trans.__('Status request'), this._model.lastError]);
    }
    const table = document.createElement('table');
    table.className = 'jp-codecomp-Details-table';
    for (const [name, value] of rows) {
      const row = table.insertRow();
      const head = document.createElement('th');
      head.textContent = name;
      row.appendChild(head);
      row.insertCell().textContent = value;
    }
    node.appendChild(table);
    if (server?.fix) {
      const title = document.createElement('p');
      title.textContent = trans.__('To fix it, run:');
      const code = document.createElement('pre');
      code.className = 'jp-codecomp-Details-fix';
      code.textContent = server.fix;
      node.append(title, code);
    }
  }

  private _trans: ReturnType<ITranslator['load']>;
  private _label: HTMLSpanElement;
  private _activeChanged = new Signal<this, void>(this);
  private _wasActive = true;
}

function fmt(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : `${Math.round(ms)} ms`;
}
