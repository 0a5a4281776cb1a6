// Runs a model.onnx through onnxruntime-node on cases written by selftest.py
// (first step with empty past tensors, then one decode step fed with the
// presents) and compares the logits with torch's.
// Usage: NODE_PATH=DIR/node_modules node ortcheck.js model.onnx cases.json tol
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function flat(a) { return a.flat(Infinity); }

async function main() {
  const [model, casesPath, tolArg] = process.argv.slice(2);
  const tol = Number(tolArg);
  const cases = JSON.parse(fs.readFileSync(casesPath, 'utf8'));
  const session = await ort.InferenceSession.create(model);
  let worst = 0;
  for (const [ci, c] of cases.entries()) {
    const batch = c.steps[0].input_ids.length;
    let past = {};
    for (let l = 0; l < c.n_layer; l++) {
      for (const kv of ['key', 'value']) {
        past[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [batch, c.n_head, 0, c.head_dim]);
      }
    }
    for (const [si, s] of c.steps.entries()) {
      const i64 = (a) => new ort.Tensor('int64', BigInt64Array.from(flat(a).map(BigInt)), [a.length, a[0].length]);
      const feeds = Object.assign({
        input_ids: i64(s.input_ids), attention_mask: i64(s.attention_mask), position_ids: i64(s.position_ids),
      }, past);
      const out = await session.run(feeds);
      const want = flat(s.logits);
      const got = out.logits.data;
      if (got.length !== want.length) throw new Error(`case ${ci} step ${si}: ${got.length} logits, want ${want.length}`);
      for (let i = 0; i < got.length; i++) {
        if (!Number.isFinite(got[i])) throw new Error(`case ${ci} step ${si}: non-finite logit at ${i}`);
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
      }
      if (worst > tol) throw new Error(`case ${ci} step ${si}: max abs difference ${worst} > ${tol}`);
      past = {};
      for (let l = 0; l < c.n_layer; l++) {
        for (const kv of ['key', 'value']) past[`past_key_values.${l}.${kv}`] = out[`present.${l}.${kv}`];
      }
    }
  }
  console.log(`onnxruntime-node ${ort.env.versions ? ort.env.versions.common : ''}: ${cases.length} cases match torch (max abs diff ${worst.toExponential(2)})`);
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
