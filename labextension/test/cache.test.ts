import { SuggestionCache } from '../src/cache';

describe('SuggestionCache', () => {
  it('gives what is left after typing through a suggestion', () => {
    const cache = new SuggestionCache();
    cache.put('k', 'x = ', '', ['compute(a)', 'count']);
    expect(cache.get('k', 'x = co', '')).toEqual(['mpute(a)', 'unt']);
    expect(cache.get('k', 'x = com', '')).toEqual(['pute(a)']);
    expect(cache.get('k', 'x = z', '')).toBeNull();
    expect(cache.get('other', 'x = co', '')).toBeNull();
  });

  it('leaves out suggestions below the confidence threshold for ghost text', () => {
    const cache = new SuggestionCache();
    cache.put('k', 'x = ', '', ['compute(a)', 'count'], [false, true]);
    expect(cache.get('k', 'x = co', '', true)).toEqual(['unt']);
    expect(cache.get('k', 'x = co', '')).toEqual(['mpute(a)', 'unt']);
  });
});
