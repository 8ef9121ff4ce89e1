// Offline schema check of Kubernetes manifests (no cluster needed), used by deploy/test.sh:
//   npm install kubernetes-models@5.1.0 yaml@2.9.1 typescript@5.9.3   (in a scratch folder)
//   node k8s-validate.mjs deploy/k8s/*.yaml                             (run from that folder)
// 1. every document is validated by kubernetes-models' JSON schema (types, required fields, formats);
// 2. every document becomes an object literal typed by that model's interface and goes through
//    `tsc --strict`, whose excess-property check rejects unknown or misspelled fields
//    (what `kubectl apply --validate=strict` would say, but kubectl needs an API server for it).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import YAML from 'yaml';

const here = path.dirname(new URL(import.meta.url).pathname);
let bad = 0, n = 0, ts = '';
for (const f of process.argv.slice(2)) {
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(f, 'utf8'))) {
    if (doc.errors.length) { bad++; console.log(`INVALID ${f}: ${doc.errors[0].message}`); continue; }
    const o = doc.toJS();
    if (!o) continue;
    const name = `${f}: ${o.kind}/${o.metadata?.name}`;
    const [g, v] = String(o.apiVersion).includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
    const spec = `kubernetes-models/${g ? g + '/' : ''}${v}/${o.kind}`;
    let mod;
    try { mod = await import(spec); } catch { bad++; console.log(`INVALID ${name}: unknown apiVersion/kind`); continue; }
    try { new mod[o.kind](o).validate(); console.log(`schema ok: ${name}`); }
    catch (e) { bad++; console.log(`INVALID ${name}: ${e.message}`); }
    ts += `import type { I${o.kind} as T${n} } from "${spec}";\n// ${name}\nexport const m${n}: T${n} = ${JSON.stringify(o, null, 1)};\n`;
    n++;
  }
}
if (n) {
  const file = path.join(here, 'manifests.ts');
  fs.writeFileSync(file, ts);
  try {
    execFileSync(path.join(here, 'node_modules/.bin/tsc'),
      ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', file],
      { stdio: 'pipe', cwd: here });
    console.log(`fields ok: ${n} documents (tsc excess-property check)`);
  } catch (e) { bad++; console.log(`INVALID fields:\n${e.stdout}`); }
}
process.exit(bad || !n ? 1 : 0);
