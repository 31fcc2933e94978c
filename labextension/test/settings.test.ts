import schema from '../schema/plugin.json';
import { minConfidence, readSettings, requestLimits } from '../src/settings';
import { DEFAULT_SETTINGS, type IServerStatus } from '../src/tokens';

const server = (extra: Partial<IServerStatus>): IServerStatus =>
  ({
    state: 'ready',
    enabled: true,
    model: 'm',
    device: 'cpu',
    providers: [],
    version: '0',
    error: null,
    fix: null,
    latency_ms: { last: null, p50: null },
    ...extra
  }) as IServerStatus;

describe('settings', () => {
  it('has the schema as the one source of defaults', () => {
    const defaults = Object.fromEntries(
      Object.entries(schema.properties).map(([name, spec]) => [name, spec.default])
    );
    expect(defaults).toEqual(DEFAULT_SETTINGS);
    expect(readSettings(defaults)).toEqual(DEFAULT_SETTINGS);
  });

  it('replaces invalid values by the defaults and clamps numbers', () => {
    const read = readSettings({
      enabled: 'yes',
      mode: 'paragraph',
      debounceMs: -5,
      maxTokens: 0,
      minConfidence: 3,
      alternatives: 2.6
    });
    expect(read.enabled).toBe(true);
    expect(read.mode).toBe('line');
    expect(read.debounceMs).toBe(0);
    expect(read.maxTokens).toBe(1);
    expect(read.minConfidence).toBe(1);
    expect(read.alternatives).toBe(3);
  });

  it('asks within the server limits, or for its default when unset', () => {
    const limits = { max_new_tokens: 256, alternatives: 5 };
    const settings = readSettings({ maxTokens: 1000 });
    expect(requestLimits(settings, server({ limits }), { n: 9, maxTokens: null })).toEqual({
      n: 5,
      maxTokens: 256
    });
    expect(
      requestLimits(DEFAULT_SETTINGS, server({ limits }), { n: 1, maxTokens: null }).maxTokens
    ).toBeUndefined();
    // Before the first status: no clamp but the request's own.
    expect(requestLimits(settings, null, { n: 2, maxTokens: 32 })).toEqual({
      n: 2,
      maxTokens: 32
    });
  });

  it('takes the confidence threshold from the user, else the server, else 0', () => {
    expect(minConfidence(DEFAULT_SETTINGS, null)).toBe(0);
    expect(minConfidence(DEFAULT_SETTINGS, server({ min_confidence: 0.4 }))).toBe(0.4);
    const user = readSettings({ minConfidence: 0.7 });
    expect(minConfidence(user, server({ min_confidence: 0.4 }))).toBe(0.7);
  });
});
