{
  description = "sn2: Bittensor Subnet 2 (Proof of Inference) miner, validator and operator tool";

  # nixpkgs only: its Rust toolchain builds the crate (rust-version stays at or below it),
  # and its lib, dockerTools and NixOS test driver do the rest.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
      revision = self.rev or self.dirtyRev or "dirty";

      # Seconds since the epoch as an ISO 8601 UTC time (days to a civil date as in
      # Howard Hinnant's `civil_from_days`): images carry the revision's time, not the build's.
      isoTime =
        seconds:
        let
          days = seconds / 86400;
          time = seconds - days * 86400;
          z = days + 719468;
          era = z / 146097;
          dayOfEra = z - era * 146097;
          yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365;
          dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100);
          shiftedMonth = (5 * dayOfYear + 2) / 153;
          day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1;
          month = if shiftedMonth < 10 then shiftedMonth + 3 else shiftedMonth - 9;
          year = yearOfEra + era * 400 + (if month <= 2 then 1 else 0);
          pad = n: lib.fixedWidthNumber 2 n;
        in
        "${toString year}-${pad month}-${pad day}T${pad (time / 3600)}:${pad (lib.mod time 3600 / 60)}:${pad (lib.mod time 60)}Z";

      # The crate, built from Cargo.lock with nixpkgs' Rust. checkPhase runs the tests that
      # need neither the network nor Python packages: the library's, the CLI's (real daemons
      # on loopback), the network, ONNX and reference-model tests. The chain tests need
      # chopsticks from npm and the wallet tests bittensor-wallet from PyPI; CI runs those.
      sn2For =
        pkgs:
        pkgs.rustPlatform.buildRustPackage {
          pname = "sn2";
          inherit (cargoToml.package) version;
          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./Cargo.toml
              ./Cargo.lock
              ./src
              ./fuzz
              ./models
              ./tests
              ./config.example.toml
            ];
          };
          cargoLock.lockFile = ./Cargo.lock;

          # The same remapping as tests/reproducible.sh: no build directory in the binaries.
          preBuild = ''
            export RUSTFLAGS="''${RUSTFLAGS:-} --remap-path-prefix=$NIX_BUILD_TOP=/build"
          '';

          nativeCheckInputs = [ pkgs.procps ];
          cargoTestFlags = [
            "--lib"
            "--test=cli"
            "--test=network"
            "--test=onnx_import"
            "--test=reference_models"
          ];

          postInstall = ''
            install -Dm644 config.example.toml $out/share/sn2/config.example.toml
            for model in models/*/; do
              name=$(basename "$model")
              install -Dm644 "$model/model.onnx" "$out/share/sn2/models/$name/model.onnx"
              install -Dm644 "$model/calibration.json" "$out/share/sn2/models/$name/calibration.json"
            done
          '';

          meta = {
            description = cargoToml.package.description;
            homepage = cargoToml.package.repository;
            license = lib.licenses.mit;
            mainProgram = "sn2";
            platforms = lib.platforms.linux;
          };
        };

      # An OCI image of one daemon: its binary (and `sn2`, for `model import` and
      # `config check`), CA certificates for wss:// endpoints, nothing else. It runs as
      # uid 10000, reads /etc/sn2/config.toml and keeps its state in /var/lib/sn2.
      ociImageFor =
        pkgs: sn2: role:
        pkgs.dockerTools.buildLayeredImage {
          name = "sn2-${role}";
          tag = sn2.version;
          created = isoTime (self.lastModified or 1);
          contents = [ sn2 ];
          fakeRootCommands = ''
            mkdir -p etc/sn2 var/lib/sn2/models tmp
            chown -R 10000:10000 var/lib/sn2
            chmod 1777 tmp
          '';
          config = {
            User = "10000:10000";
            Entrypoint = [ "${sn2}/bin/sn2-${role}" ];
            Cmd = [
              "--config"
              "/etc/sn2/config.toml"
            ];
            WorkingDir = "/var/lib/sn2";
            Env = [
              "HOME=/var/lib/sn2"
              "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt"
            ];
            Volumes."/var/lib/sn2" = { };
            ExposedPorts =
              if role == "miner" then
                {
                  "8091/tcp" = { };
                  "8091/udp" = { };
                  "9090/tcp" = { };
                }
              else
                { "9090/tcp" = { }; };
            Labels = {
              "org.opencontainers.image.title" = "sn2-${role}";
              "org.opencontainers.image.description" = "sn2 ${role} for Bittensor Subnet 2";
              "org.opencontainers.image.version" = sn2.version;
              "org.opencontainers.image.revision" = revision;
              "org.opencontainers.image.source" = cargoToml.package.repository;
              "org.opencontainers.image.licenses" = "MIT";
            };
          };
        };

      appOf = program: description: {
        type = "app";
        inherit program;
        meta = { inherit description; };
      };
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          sn2 = sn2For pkgs;
        in
        {
          inherit sn2;
          default = sn2;
          oci-miner = ociImageFor pkgs sn2 "miner";
          oci-validator = ociImageFor pkgs sn2 "validator";
        }
      );

      apps = forAllSystems (
        pkgs:
        let
          sn2 = self.packages.${pkgs.stdenv.hostPlatform.system}.sn2;
          devnet = pkgs.writeShellScript "sn2-devnet" ''exec ${sn2}/bin/sn2 devnet "$@"'';
        in
        {
          default = appOf "${devnet}" "A validator and miners on loopback, without a chain";
          sn2 = appOf "${sn2}/bin/sn2" "The sn2 operator tool";
          miner = appOf "${sn2}/bin/sn2-miner" "The sn2 miner daemon (--config FILE)";
          validator = appOf "${sn2}/bin/sn2-validator" "The sn2 validator daemon (--config FILE)";
        }
      );

      # The module, with this flake's package as its default.
      nixosModules.default =
        { pkgs, lib, ... }:
        {
          imports = [ ./modules/sn2.nix ];
          services.sn2.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.sn2;
        };

      checks = forAllSystems (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
        in
        {
          package = self.packages.${system}.sn2;
          # The module evaluated as tests/module-eval.nix does with nixpkgs' lib alone.
          module-eval = pkgs.writeText "sn2-module-eval.json" (
            builtins.toJSON (import ./tests/module-eval.nix { inherit lib; })
          );
          # The module in a real NixOS system: its units and checked config files build.
          module-units =
            let
              nixos = lib.nixosSystem {
                inherit system;
                modules = [
                  self.nixosModules.default
                  ./tests/nixos-example.nix
                  {
                    boot.isContainer = true;
                    system.stateVersion = "25.11";
                  }
                ];
              };
            in
            pkgs.linkFarm "sn2-module-units" {
              "sn2-miner.service" = nixos.config.systemd.units."sn2-miner.service".unit;
              "sn2-validator.service" = nixos.config.systemd.units."sn2-validator.service".unit;
            };
          vm = import ./tests/nixos.nix {
            inherit pkgs;
            module = self.nixosModules.default;
          };
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.sn2 ];
          packages = [
            pkgs.cargo
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.nodejs
            pkgs.python3
            pkgs.nixfmt
          ];
        };
      });

      # `nix fmt`: nixfmt (RFC 166 style) over the whole tree.
      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
