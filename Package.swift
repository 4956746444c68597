// swift-tools-version: 6.0
import PackageDescription
import Foundation

// The kernels need a real CPU target: without `-target-cpu`, SIMD `addingProduct` lowers to
// one libm call per lane (about 150× slower). The CPU is a build setting, never picked at run
// time, so the bits a build produces do not depend on the CPU it runs on.
let targetCPU = ProcessInfo.processInfo.environment["SWIFT_CNN_TRAIN_CPU"] ?? "native"
// The shipped release build drops bounds and overflow checks (-Ounchecked); a build that must
// trap on a bad index instead (scripts/fuzz) sets SWIFT_CNN_TRAIN_CHECKED=1 and keeps -O.
let checked = ProcessInfo.processInfo.environment["SWIFT_CNN_TRAIN_CHECKED"] == "1"
let hotSettings: [SwiftSetting] = [.unsafeFlags(["-target-cpu", targetCPU])]
    + (checked ? [] : [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))])

let package = Package(
    name: "swift-cnn-train",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "swift-cnn-train", targets: ["swift-cnn-train"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .target(
            name: "Engine",
            dependencies: ["CZstd", "CZlib", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: hotSettings
        ),
        // Sources/Distributed; the module is not called `Distributed` because the Swift
        // toolchain ships a module of that name (distributed actors).
        .target(
            name: "DistributedTraining",
            dependencies: ["Engine", "CMPI"],
            path: "Sources/Distributed",
            swiftSettings: hotSettings
        ),
        .executableTarget(
            name: "swift-cnn-train",
            dependencies: [
                "Engine", "DistributedTraining",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: hotSettings
        ),
        // One fuzz target per parser of untrusted input (scripts/fuzz); a plain build makes
        // the replayer that runs files through the same code.
        .executableTarget(
            name: "fuzz-parsers",
            dependencies: ["Engine", "CZlib"],
            swiftSettings: hotSettings
        ),
        // Per-layer forward and backward times (scripts/bench-layers).
        .executableTarget(
            name: "bench-layers",
            dependencies: ["Engine", "DistributedTraining"],
            swiftSettings: hotSettings
        ),
        .target(
            name: "TestSupport",
            dependencies: ["Engine"],
            path: "Tests/TestSupport",
            swiftSettings: hotSettings
        ),
        .testTarget(
            name: "EngineTests",
            dependencies: ["Engine", "TestSupport"],
            exclude: ["Fixtures"],
            swiftSettings: hotSettings
        ),
        .testTarget(
            name: "DistributedTests",
            dependencies: ["Engine", "DistributedTraining", "TestSupport"],
            swiftSettings: hotSettings
        ),
        .testTarget(
            name: "CLITests",
            dependencies: ["TestSupport"],
            swiftSettings: hotSettings
        ),
    ],
    swiftLanguageModes: [.v5]
)
