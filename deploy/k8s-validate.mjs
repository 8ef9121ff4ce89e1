// Offline schema check of Kubernetes manifests (no cluster needed), used by deploy/test.sh:
//   npm install kubernetes-models@5.1.0 yaml@2.9.1 typescript@5.9.3   (in a scratch folder)
//   node k8s-validate.mjs deploy/k8s/*.yaml                             (run from that folder)
// 1. every document is validated by kubernetes-models' JSON schema (types, required fields, formats);
// 2. every document becomes an object literal typed by that model's interface and goes through
//    `tsc --strict`, whose excess-property check rejects unknown or misspelled fields
//    (what `kubectl apply --validate=strict` would say, but kubectl needs an API server for it);
// 3. convd's own rules over the set of files given (one deployable set per run: the fleet is
//    deploy/k8s/*.yaml, the SQLite variant deploy/k8s/service.yaml + deploy/k8s/sqlite/*.yaml):
//    see checkConvd below.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import YAML from 'yaml';

const here = path.dirname(new URL(import.meta.url).pathname);
let bad = 0, n = 0, ts = '';
const docs = [];
for (const f of process.argv.slice(2)) {
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(f, 'utf8'))) {
    if (doc.errors.length) { bad++; console.log(`INVALID ${f}: ${doc.errors[0].message}`); continue; }
    const o = doc.toJS();
    if (!o) continue;
    const name = `${f}: ${o.kind}/${o.metadata?.name}`;
    docs.push({ name, o });
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
// K8S_VALIDATE_RULES_ONLY=1 skips the (slow) TypeScript pass: for checking that a rule refuses a manifest
if (n && process.env.K8S_VALIDATE_RULES_ONLY !== '1') {
  const file = path.join(here, 'manifests.ts');
  fs.writeFileSync(file, ts);
  try {
    execFileSync(path.join(here, 'node_modules/.bin/tsc'),
      ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', file],
      { stdio: 'pipe', cwd: here });
    console.log(`fields ok: ${n} documents (tsc excess-property check)`);
  } catch (e) { bad++; console.log(`INVALID fields:\n${e.stdout}`); }
}

// convd's rules: where the store comes from and what a store needs of the Deployment.
function checkConvd() {
  const errs = [];
  const of = (k) => docs.filter((d) => d.o.kind === k);
  const deps = of('Deployment');
  if (!deps.length) errs.push('no Deployment in the set');
  for (const { name, o } of deps) {
    const spec = o.spec ?? {}, pod = spec.template?.spec ?? {};
    const labels = spec.template?.metadata?.labels ?? {};
    for (const [k, v] of Object.entries(spec.selector?.matchLabels ?? {}))
      if (labels[k] !== v) errs.push(`${name}: selector ${k}=${v} does not match the pod labels`);
    const c = (pod.containers ?? []).find((x) => x.name === 'convd');
    if (!c) { errs.push(`${name}: no container named convd`); continue; }
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
    const fromSecret = (c.envFrom ?? []).some((e) => e.secretRef?.name);
    if (!c.securityContext?.readOnlyRootFilesystem) errs.push(`${name}: root file system not read-only`);
    // stop: preStop sleep + drain must fit in the grace period, with a margin
    const drain = Number(env.CONVD_DRAIN_TIMEOUT?.value ?? 25);
    const pre = Number((c.lifecycle?.preStop?.exec?.command ?? []).find((x) => /^\d+$/.test(x)) ?? 0);
    if (!((pod.terminationGracePeriodSeconds ?? 30) > drain + pre))
      errs.push(`${name}: terminationGracePeriodSeconds must exceed drain ${drain} s + preStop ${pre} s`);
    const mountOf = (path) => (c.volumeMounts ?? []).find((m) => path === m.mountPath || path.startsWith(m.mountPath.replace(/\/?$/, '/')));
    const volOf = (m) => (pod.volumes ?? []).find((v) => v.name === m?.name);
    const store = env.CONVD_STORE;
    if (store?.value !== undefined) {
      const url = String(store.value);
      if (!url.startsWith('sqlite:')) {
        errs.push(`${name}: CONVD_STORE is written in the manifest (${url.replace(/:[^:@/]*@/, ':***@')}); a database URL belongs in the Secret`);
      } else {
        // SQLite: one process per file, on a claim, never two pods at once
        const file = url.slice('sqlite:'.length), dir = file.replace(/\/[^/]*$/, '');
        if (!file.startsWith('/')) errs.push(`${name}: the SQLite path ${file} must be absolute (on the claim)`);
        const m = mountOf(dir + '/x'), v = volOf(m);
        const claim = v?.persistentVolumeClaim?.claimName;
        if (!claim) errs.push(`${name}: the SQLite file ${file} is not on a PersistentVolumeClaim`);
        else {
          const pvc = of('PersistentVolumeClaim').find((d) => d.o.metadata?.name === claim);
          if (!pvc) errs.push(`${name}: claim ${claim} is not in the set`);
          else if (!(pvc.o.spec?.accessModes ?? []).includes('ReadWriteOnce'))
            errs.push(`${pvc.name}: a SQLite claim is ReadWriteOnce`);
        }
        if (m?.readOnly) errs.push(`${name}: the SQLite volume is mounted read-only`);
        if (spec.replicas !== 1) errs.push(`${name}: SQLite allows one replica (replicas: ${spec.replicas})`);
        if (spec.strategy?.type !== 'Recreate')
          errs.push(`${name}: SQLite needs strategy Recreate (a rolling update runs two pods on one file)`);
        if (pod.securityContext?.fsGroup === undefined)
          errs.push(`${name}: no fsGroup: uid 10001 cannot write a new claim`);
      }
    } else if (store?.valueFrom) {
      if (!store.valueFrom.secretKeyRef) errs.push(`${name}: CONVD_STORE must come from a Secret`);
    } else if (!fromSecret) {
      errs.push(`${name}: CONVD_STORE is neither set nor taken from a Secret (the image's default SQLite on the pod's own volume)`);
    }
    // a fleet (store from the Secret) may scale; its password file must be a mounted Secret
    const pwf = env.CONVD_STORE_PASSWORD_FILE?.value;
    if (pwf !== undefined) {
      const m = mountOf(String(pwf)), v = volOf(m);
      if (!v?.secret?.secretName) errs.push(`${name}: CONVD_STORE_PASSWORD_FILE ${pwf} is not on a Secret volume`);
    }
    for (const e of c.env ?? [])
      if (/PASSWORD/.test(e.name) && e.value !== undefined && !/_FILE$/.test(e.name))
        errs.push(`${name}: ${e.name} has a literal value`);
  }
  for (const { name, o } of of('Service')) {
    const sel = o.spec?.selector ?? {};
    const hit = deps.find((d) => Object.entries(sel).every(([k, v]) => d.o.spec?.template?.metadata?.labels?.[k] === v));
    if (!hit) { errs.push(`${name}: its selector matches no Deployment in the set`); continue; }
    const ports = (hit.o.spec.template.spec.containers ?? []).flatMap((x) => x.ports ?? []);
    for (const p of o.spec?.ports ?? [])
      if (typeof p.targetPort === 'string' && !ports.some((q) => q.name === p.targetPort))
        errs.push(`${name}: targetPort ${p.targetPort} names no container port`);
  }
  for (const e of errs) console.log(`INVALID convd rule: ${e}`);
  if (!errs.length) console.log(`convd rules ok: ${deps.map((d) => d.o.metadata?.name + ' x' + d.o.spec?.replicas + ' ' + (d.o.spec?.strategy?.type ?? '')).join(', ')}`);
  return errs.length;
}
if (n) bad += checkConvd();
process.exit(bad || !n ? 1 : 0);
