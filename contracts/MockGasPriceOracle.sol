// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// A stand-in for the OP-stack GasPriceOracle predeploy (0x420000000000000000000000000000000000000F),
/// for tests on anvil: every transaction's L1 data fee is a fixed 0.001 ETH.
contract MockGasPriceOracle {
    function getL1FeeUpperBound(uint256) external pure returns (uint256) {
        return 1e15;
    }

    function getL1Fee(bytes calldata) external pure returns (uint256) {
        return 1e15;
    }
}
