/**
 * Turns a completer request (editor text + cursor) and its widget into the
 * server's request body: cells above and below, path, kernel, language.
 */
import type { CompletionHandler } from '@jupyterlab/completer';
import { Text } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';
import type { Session } from '@jupyterlab/services';
import type { Widget } from '@lumino/widgets';

import { isNotebookEnabled } from './metadata';
import type {
  CompletionMode,
  IBuiltRequest,
  ICodecompCell,
  ICompletionRequest
} from './tokens';

/** Bounds that keep a request well under the server's limits. */
const MAX_CELLS_ABOVE = 100;
const MAX_CELLS_BELOW = 20;
const MAX_CELL_CHARS = 20000;
const MAX_PREFIX_CHARS = 50000;
const MAX_SUFFIX_CHARS = 20000;

/** Editor MIME types served in files outside notebooks. */
const PYTHON_MIMES = new Set(['text/x-python', 'text/x-ipython']);

/** What a provider asks for, on top of what the widget says. */
export interface IRequestOptions {
  mode: CompletionMode;
  n: number;
  maxTokens: number;
}

/** A document widget as far as this module cares (a file editor). */
interface IDocumentLike extends Widget {
  context: { path: string };
}

export class RequestBuilder {
  /**
   * The request for this widget, or null when it should not be asked:
   * unsupported widget or cell, or a notebook switched off.
   */
  build(
    request: CompletionHandler.IRequest,
    widget: Widget,
    session: Session.ISessionConnection | null | undefined,
    options: IRequestOptions
  ): IBuiltRequest | null {
    const text = request.text;
    const cursor = Text.charIndexToJsIndex(request.offset, text);
    const prefix = text.slice(0, cursor);
    const suffix = text.slice(cursor);
    const newline = suffix.indexOf('\n');
    const lineSuffix = newline === -1 ? suffix : suffix.slice(0, newline);
    const common = {
      prefix: prefix.slice(-MAX_PREFIX_CHARS),
      suffix: suffix.slice(0, MAX_SUFFIX_CHARS),
      max_new_tokens: options.maxTokens,
      n: options.n,
      mode: options.mode
    };
    if (widget instanceof NotebookPanel) {
      const notebook = this._notebook(widget, text, session);
      if (!notebook) {
        return null;
      }
      return {
        body: { ...common, ...notebook.body },
        key: notebook.key,
        lineSuffix,
        cursor
      };
    }
    const path = (widget as IDocumentLike).context?.path;
    if (typeof path === 'string' && this._isPython(path, request.mimeType)) {
      const body: ICompletionRequest = {
        ...common,
        cells: [],
        cells_below: [],
        kernel_id: session?.kernel?.id ?? null,
        path,
        language: 'python'
      };
      return { body, key: path, lineSuffix, cursor };
    }
    return null;
  }

  /** Whether the widget is one this extension serves and is switched on. */
  isServed(widget: Widget | null | undefined): boolean {
    if (!widget) {
      return false;
    }
    if (widget instanceof NotebookPanel) {
      return isNotebookEnabled(widget.model);
    }
    const path = (widget as IDocumentLike).context?.path;
    return typeof path === 'string' && path.endsWith('.py');
  }

  private _notebook(
    panel: NotebookPanel,
    text: string,
    session: Session.ISessionConnection | null | undefined
  ): { body: Omit<ICompletionRequest, 'prefix' | 'suffix'>; key: string } | null {
    const model = panel.model;
    if (!model || !isNotebookEnabled(model)) {
      return null;
    }
    const cells = panel.content.widgets;
    let index = panel.content.activeCellIndex;
    if (cells[index]?.model.sharedModel.getSource() !== text) {
      // The completer's editor is not the active cell's: find it by its text.
      index = cells.findIndex(cell => cell.model.sharedModel.getSource() === text);
    }
    const current = cells[index];
    if (!current || current.model.type !== 'code') {
      return null;
    }
    const toCell = (i: number): ICodecompCell => {
      const cell = cells[i].model;
      return {
        cell_type: cell.type === 'code' || cell.type === 'markdown' ? cell.type : 'raw',
        source: cell.sharedModel.getSource().slice(0, MAX_CELL_CHARS)
      };
    };
    const above: ICodecompCell[] = [];
    for (let i = Math.max(0, index - MAX_CELLS_ABOVE); i < index; i++) {
      above.push(toCell(i));
    }
    const below: ICodecompCell[] = [];
    for (let i = index + 1; i < Math.min(cells.length, index + 1 + MAX_CELLS_BELOW); i++) {
      below.push(toCell(i));
    }
    const path = panel.context.path;
    const kernel = session?.kernel ?? panel.sessionContext.session?.kernel ?? null;
    return {
      body: {
        cells: above,
        cells_below: below,
        kernel_id: kernel?.id ?? null,
        path,
        language: this._language(panel)
      },
      key: `${path}#${current.model.id}`
    };
  }

  private _language(panel: NotebookPanel): string {
    const model = panel.model;
    const info = model?.getMetadata('language_info') as { name?: string } | undefined;
    const spec = model?.getMetadata('kernelspec') as { language?: string } | undefined;
    return (info?.name || spec?.language || 'python').toLowerCase();
  }

  private _isPython(path: string, mimeType?: string): boolean {
    return path.endsWith('.py') || (!!mimeType && PYTHON_MIMES.has(mimeType));
  }
}
