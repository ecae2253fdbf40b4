// Regenerates DemoToken.bin from DemoToken.sol. Not needed to build or test cTrip:
//   npm install --no-save solc@0.8 && node contracts/compile.js
const fs = require("fs");
const path = require("path");
const solc = require("solc");
const source = fs.readFileSync(path.join(__dirname, "DemoToken.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "DemoToken.sol": { content: source } },
  settings: { optimizer: { enabled: true, runs: 200 }, outputSelection: { "*": { "*": ["evm.bytecode.object"] } } },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
for (const e of out.errors || []) if (e.severity === "error") { console.error(e.formattedMessage); process.exit(1); }
const bin = out.contracts["DemoToken.sol"].DemoToken.evm.bytecode.object;
fs.writeFileSync(path.join(__dirname, "DemoToken.bin"), bin + "\n");
console.log(`DemoToken.bin: ${bin.length / 2} bytes, solc ${solc.version()}`);
