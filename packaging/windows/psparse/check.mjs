// Checks that PowerShell scripts parse, with the tree-sitter PowerShell
// grammar compiled to WebAssembly (no pwsh, no native build).
//
//   node check.mjs FILE.ps1...
//
// Prints every syntax error as FILE:LINE:COLUMN and exits 1 when there is
// one. tree-sitter recovers from errors, so the check walks the whole tree for
// ERROR and MISSING nodes rather than trusting the parse to fail.
import { Parser, Language } from 'web-tree-sitter';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const grammar = fileURLToPath(new URL('node_modules/tree-sitter-powershell/tree-sitter-powershell.wasm', import.meta.url));

await Parser.init();
const parser = new Parser();
parser.setLanguage(await Language.load(grammar));

let failed = false;
for (const file of process.argv.slice(2)) {
  const tree = parser.parse(readFileSync(file, 'utf8'));
  const bad = [];
  const walk = (node) => {
    if (node.isError || node.isMissing) {
      bad.push(node);
      return;
    }
    if (node.hasError) {
      for (const child of node.children) walk(child);
    }
  };
  walk(tree.rootNode);
  for (const n of bad) {
    const what = n.isMissing ? `missing ${n.type}` : `syntax error near ${JSON.stringify(n.text.slice(0, 40))}`;
    console.error(`${file}:${n.startPosition.row + 1}:${n.startPosition.column + 1}: ${what}`);
  }
  if (bad.length > 0 || tree.rootNode.hasError) failed = true;
  else console.log(`${file}: parses`);
}
process.exit(failed ? 1 : 0);
