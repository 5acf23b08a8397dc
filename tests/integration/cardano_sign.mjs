// Signs like a CIP-30 wallet's signData, with the real Cardano libraries (EMURGO's
// serialization and message-signing libraries), never with HydroX code.
//   node cardano_sign.mjs address <kind> <network> <payment_key_hex> <stake_key_hex>
//        kind: base | enterprise | reward; network: 0 (test-net) or 1 (mainnet)   → {"address"}
//   node cardano_sign.mjs sign <address> <signing_key_hex> <message> [hashed]
//        → {"signature": COSE_Sign1 hex, "key": COSE_Key hex}
import CSL from "@emurgo/cardano-serialization-lib-nodejs";
import MS from "@emurgo/cardano-message-signing-nodejs";

const [cmd, ...args] = process.argv.slice(2);
const hex = (b) => Buffer.from(b).toString("hex");
const key = (h) => CSL.PrivateKey.from_normal_bytes(Buffer.from(h, "hex"));

if (cmd === "address") {
  const [kind, network, paymentHex, stakeHex] = args;
  const net = Number(network);
  const pay = CSL.Credential.from_keyhash(key(paymentHex).to_public().hash());
  const stake = CSL.Credential.from_keyhash(key(stakeHex).to_public().hash());
  let addr;
  if (kind === "base") addr = CSL.BaseAddress.new(net, pay, stake).to_address();
  else if (kind === "enterprise") addr = CSL.EnterpriseAddress.new(net, pay).to_address();
  else addr = CSL.RewardAddress.new(net, stake).to_address();
  console.log(JSON.stringify({ address: addr.to_bech32() }));
} else if (cmd === "sign") {
  const [address, signingHex, message, hashed] = args;
  const sk = key(signingHex);
  const addr = CSL.Address.from_bech32(address);
  const protectedHeaders = MS.HeaderMap.new();
  protectedHeaders.set_algorithm_id(MS.Label.from_algorithm_id(MS.AlgorithmId.EdDSA));
  protectedHeaders.set_header(MS.Label.new_text("address"), MS.CBORValue.new_bytes(addr.to_bytes()));
  const headers = MS.Headers.new(MS.ProtectedHeaderMap.new(protectedHeaders), MS.HeaderMap.new());
  const builder = MS.COSESign1Builder.new(headers, Buffer.from(message, "utf8"), false);
  if (hashed === "hashed") builder.hash_payload();
  const signature = sk.sign(builder.make_data_to_sign().to_bytes()).to_bytes();
  const sign1 = builder.build(signature);
  const k = MS.COSEKey.new(MS.Label.from_key_type(MS.KeyType.OKP));
  k.set_algorithm_id(MS.Label.from_algorithm_id(MS.AlgorithmId.EdDSA));
  k.set_header(MS.Label.new_int(MS.Int.new_negative(MS.BigNum.from_str("1"))), MS.CBORValue.new_int(MS.Int.new_i32(6)));
  k.set_header(MS.Label.new_int(MS.Int.new_negative(MS.BigNum.from_str("2"))), MS.CBORValue.new_bytes(sk.to_public().as_bytes()));
  console.log(JSON.stringify({ signature: hex(sign1.to_bytes()), key: hex(k.to_bytes()) }));
} else {
  console.error("usage: cardano_sign.mjs address <kind> <network> <payment_key> <stake_key> | sign <address> <key> <message> [hashed]");
  process.exit(2);
}
