const test = require("node:test");
const assert = require("node:assert");
test("version", () => {
  assert.strictEqual(require("./package.json").version, "1.0.0");
});
