import { LiveSuggestion } from '../src/live';
import type { IBuiltRequest, IStreamHandle, IStreamMessage } from '../src/tokens';

/** A stream handle fed by the test. */
class Handle implements IStreamHandle {
  id = 'h';
  closed = false;
  cancelled = false;
  push(message: IStreamMessage): void {
    const waiter = this._waiters.shift();
    if (waiter) {
      waiter(message);
    } else {
      this._queue.push(message);
    }
  }
  next(): Promise<IStreamMessage | null> {
    const queued = this._queue.shift();
    return queued ? Promise.resolve(queued) : new Promise(r => this._waiters.push(r));
  }
  cancel(): void {
    this.cancelled = true;
  }
  private _queue: IStreamMessage[] = [];
  private _waiters: Array<(m: IStreamMessage | null) => void> = [];
}

function built(lead = ''): IBuiltRequest {
  const body = {
    prefix: 'x = ' + lead,
    suffix: '',
    cells: [],
    cells_below: [],
    kernel_id: null,
    path: 'nb.ipynb',
    language: 'python'
  };
  return { body, key: 'nb.ipynb#c', lineSuffix: '', cursor: 4, lead };
}

function live(handle: Handle, min: number, lead = '') {
  const ended: Array<string[] | null> = [];
  const suggestion = new LiveSuggestion(handle, built(lead), 'x = ', {
    clean: text => text.trim(),
    minConfidence: () => min,
    onReply: () => undefined,
    onError: () => undefined,
    onEnd: texts => ended.push(texts)
  });
  return { suggestion, ended };
}

const reply = (completions: Array<{ text: string; confidence?: number }>) => ({
  id: 'h',
  done: true,
  reply: {
    model: 'm',
    device: 'cpu',
    completions: completions.map(c => ({ score: 0, ...c }))
  }
});

describe('LiveSuggestion', () => {
  it('streams the text, then shows only confident completions as ghost text', async () => {
    const handle = new Handle();
    const { suggestion, ended } = live(handle, 0.5);
    handle.push({ id: 'h', done: false, text: 'compute(' });
    await suggestion.changed();
    expect(suggestion.text).toBe('compute(');
    handle.push(
      reply([
        { text: 'compute(a)', confidence: 0.2 },
        { text: 'compute(b)', confidence: 0.9 }
      ])
    );
    await suggestion.changed();
    expect(suggestion.done).toBe(true);
    expect(suggestion.texts).toEqual(['compute(a)', 'compute(b)']);
    expect(suggestion.ghostTexts).toEqual(['compute(b)']);
    expect(ended).toEqual([['compute(b)']]);
  });

  it('counts a completion without a confidence as sure', async () => {
    const handle = new Handle();
    const { suggestion } = live(handle, 0.9);
    handle.push(reply([{ text: 'y' }]));
    await suggestion.changed();
    expect(suggestion.ghostTexts).toEqual(['y']);
  });

  it('puts the lead (the next line) before every text', async () => {
    const handle = new Handle();
    const { suggestion } = live(handle, 0, '\n');
    handle.push(reply([{ text: 'print(x)' }]));
    await suggestion.changed();
    expect(suggestion.ghostTexts).toEqual(['\nprint(x)']);
  });
});
