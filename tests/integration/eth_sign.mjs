// Signs with a real wallet library (ethers), never with HydroX code.
//   node eth_sign.mjs new                      → {"private_key","address"}
//   node eth_sign.mjs sign <private_key> <msg> → {"signature"} (EIP-191 personal_sign)
import { Wallet } from "ethers";

const [cmd, key, message] = process.argv.slice(2);
if (cmd === "new") {
  const w = Wallet.createRandom();
  console.log(JSON.stringify({ private_key: w.privateKey, address: w.address }));
} else if (cmd === "sign") {
  const w = new Wallet(key);
  console.log(JSON.stringify({ signature: await w.signMessage(message) }));
} else {
  console.error("usage: eth_sign.mjs new | sign <key> <message>");
  process.exit(2);
}
