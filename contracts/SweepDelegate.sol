// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface IERC20 {
    function balanceOf(address owner) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
}

/// The code token deposit addresses delegate to (EIP-7702). It has no storage and no owner:
/// the treasury is fixed in the code at deployment, so whoever calls it (the gas tank, or
/// anyone holding a leaked gas-tank key) can only move a deposit's tokens to that treasury.
/// A different treasury is a different deployment (its CREATE2 address follows from it).
contract SweepDelegate {
    address public immutable TREASURY;

    constructor(address treasury) {
        TREASURY = treasury;
    }

    /// Moves this account's whole balance of each of `tokens` to the treasury.
    function sweep(address[] calldata tokens) public {
        for (uint256 i = 0; i < tokens.length; i++) {
            IERC20 token = IERC20(tokens[i]);
            uint256 balance = token.balanceOf(address(this));
            if (balance > 0) {
                require(token.transfer(TREASURY, balance), "transfer failed");
            }
        }
    }

    /// Sweeps each of `deposits` (accounts delegated to this code) in one transaction.
    function sweepMany(address[] calldata deposits, address[] calldata tokens) external {
        for (uint256 i = 0; i < deposits.length; i++) {
            SweepDelegate(payable(deposits[i])).sweep(tokens);
        }
    }

    /// Native value sent to a delegated deposit stays there (and is reported by the audit);
    /// without this, every plain transfer to the address would revert.
    receive() external payable {}
}
