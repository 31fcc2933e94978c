/** Unit tests of the frontend's pure logic (suggestion cleaning, partial accept, the
 * debounce, request building, settings), as JupyterLab's own packages test theirs. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json', isolatedModules: true }]
  }
};
