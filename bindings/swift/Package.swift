// swift-tools-version:5.5
// The C library minerva as a Swift package: a system-library target over the installed library,
// found with pkg-config ("minerva"). Swift code does `import CMinerva`. See docs/bindings/SWIFT.md.
// Not compiled by a Swift toolchain in minerva's CI (none installs there); the module map it
// points at is checked with clang -fmodules by bindings/swift/test.sh.
import PackageDescription

let package = Package(
    name: "CMinerva",
    products: [
        .library(name: "CMinerva", targets: ["CMinerva"]),
    ],
    targets: [
        .systemLibrary(
            name: "CMinerva",
            path: "Sources/CMinerva",
            pkgConfig: "minerva",
            providers: []
        ),
    ]
)
