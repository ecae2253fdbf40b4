// Regenerates the committed bytecode (*.bin) from the Solidity sources. Not needed to
// build or test cTrip:
//   npm install --no-save solc@0.8 && node contracts/compile.js
const fs = require("fs");
const path = require("path");
const solc = require("solc");
for (const name of ["DemoToken", "SweepDelegate", "MockGasPriceOracle"]) {
  const source = fs.readFileSync(path.join(__dirname, `${name}.sol`), "utf8");
  const input = {
    language: "Solidity",
    sources: { [`${name}.sol`]: { content: source } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { "*": { "*": ["evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  for (const e of out.errors || []) if (e.severity === "error") { console.error(e.formattedMessage); process.exit(1); }
  const evm = out.contracts[`${name}.sol`][name].evm;
  // The oracle stand-in is installed with anvil_setCode: it needs its runtime code.
  const bin = name === "MockGasPriceOracle" ? evm.deployedBytecode.object : evm.bytecode.object;
  fs.writeFileSync(path.join(__dirname, `${name}.bin`), bin + "\n");
  console.log(`${name}.bin: ${bin.length / 2} bytes, solc ${solc.version()}`);
}
