// Search, page through and read a running fhirstudy with fhir-kit-client (npm, an ES module).
// usage: node fhir_kit_client.mjs BASE_URL PATH_TO/node_modules/fhir-kit-client
// prints one JSON object: {"pages": [[ids of page 1], ...], "total": n, "read": {...}}
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import fs from 'node:fs';

const [baseUrl, packageDir] = process.argv.slice(2);
const entry = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).exports['.'].import;
const { Client } = await import(pathToFileURL(path.join(packageDir, entry)).href);

const client = new Client({ baseUrl });
const pages = [];
let bundle = await client.search({
  resourceType: 'ResearchStudy', searchParams: { condition: 'breast-cancer', _count: 1 },
});
const total = bundle.total;
while (bundle) {
  pages.push((bundle.entry || []).map((e) => e.resource.id));
  bundle = await client.nextPage({ bundle });
}
const read = await client.read({ resourceType: 'ResearchStudy', id: pages[0][0] });
process.stdout.write(JSON.stringify({ pages, total, read }));
