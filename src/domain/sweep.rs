//! The shapes of the transactions a sweep sends, shared by the sweeper that builds them
//! and the signer's policy that checks them: the ERC-20 transfer, the EIP-7702 sweep
//! delegate (its creation code, its CREATE2 address and its `sweepMany` call).

use alloy::primitives::{address, keccak256, Address, B256, U256};

/// The delegate's creation code (`contracts/SweepDelegate.sol`, compiled by
/// `contracts/compile.js`); its constructor takes the treasury.
const DELEGATE_BIN: &str = include_str!("../../contracts/SweepDelegate.bin");

/// The deterministic CREATE2 deployer present on anvil and most public chains.
pub const CREATE2_DEPLOYER: Address = address!("4e59b44847b379578588920cA78FbF26c0B4956C");

alloy::sol! {
    /// `SweepDelegate.sweepMany`.
    function sweepMany(address[] deposits, address[] tokens);
}

/// The delegate's creation code for `treasury` (the constructor argument appended).
pub fn delegate_initcode(treasury: Address) -> Vec<u8> {
    let mut code = hex::decode(DELEGATE_BIN.trim()).unwrap_or_default();
    code.extend_from_slice(B256::left_padding_from(treasury.as_slice()).as_slice());
    code
}

/// The CREATE2 deployer's input that deploys the delegate for `treasury` (salt zero).
pub fn delegate_deployment(treasury: Address) -> Vec<u8> {
    let mut input = B256::ZERO.to_vec();
    input.extend_from_slice(&delegate_initcode(treasury));
    input
}

/// Where the delegate for `treasury` lives: a CREATE2 address, the same on every chain
/// with the deployer, and different for every treasury. The delegate can only ever send
/// to that treasury (it is fixed in its code), which is what makes signing authorizations
/// to it safe.
pub fn delegate_address(treasury: Address) -> Address {
    CREATE2_DEPLOYER.create2(B256::ZERO, keccak256(delegate_initcode(treasury)))
}

/// Whether `code` is an EIP-7702 delegation designator pointing at `delegate`.
pub fn delegates_to(code: &[u8], delegate: Address) -> bool {
    code.len() == 23 && code[..3] == [0xef, 0x01, 0x00] && code[3..] == *delegate.as_slice()
}

/// The calldata of ERC-20 `transfer(to, amount)`.
pub fn transfer_call(to: Address, amount: U256) -> Vec<u8> {
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(B256::left_padding_from(to.as_slice()).as_slice());
    data.extend_from_slice(&amount.to_be_bytes::<32>());
    data
}

/// The recipient of ERC-20 `transfer` calldata, if `data` is exactly such a call.
pub fn transfer_recipient(data: &[u8]) -> Option<Address> {
    if data.len() != 68 || data[..4] != [0xa9, 0x05, 0x9c, 0xbb] || data[4..16] != [0u8; 12] {
        return None;
    }
    Some(Address::from_slice(&data[16..36]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_names_its_recipient_and_nothing_else_passes_for_one() {
        let to = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let data = transfer_call(to, U256::from(5u64));
        assert_eq!(transfer_recipient(&data), Some(to));
        let mut longer = data.clone();
        longer.push(0);
        assert_eq!(transfer_recipient(&longer), None);
        let mut approve = data.clone();
        approve[..4].copy_from_slice(&[0x09, 0x5e, 0xa7, 0xb3]);
        assert_eq!(transfer_recipient(&approve), None);
        let mut dirty = data;
        dirty[4] = 1;
        assert_eq!(transfer_recipient(&dirty), None, "high address bits set");
        assert_ne!(
            delegate_address(to),
            delegate_address(Address::ZERO),
            "one delegate per treasury"
        );
    }
}
