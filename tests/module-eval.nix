# Evaluates modules/sn2.nix with nixpkgs' lib alone (no nixpkgs, no NixOS): the few NixOS
# options the module sets are declared here, and `pkgs` is a stand-in that renders nothing.
# Every expectation below throws with its name when it does not hold; the result is the
# settings each daemon would get, for tests/module-eval.sh to check with `sn2 config check`.
#
#   nix-instantiate --eval --strict --json tests/module-eval.nix --arg lib 'import NIXPKGS_LIB/lib'
{ lib }:
let
  freeform = lib.types.attrsOf (lib.types.submodule { freeformType = lib.types.attrsOf lib.types.anything; });

  # The NixOS options modules/sn2.nix sets, declared loosely.
  nixosStubs = {
    options = {
      assertions = lib.mkOption {
        type = lib.types.listOf lib.types.unspecified;
        default = [ ];
      };
      warnings = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
      };
      environment.systemPackages = lib.mkOption {
        type = lib.types.listOf lib.types.unspecified;
        default = [ ];
      };
      environment.etc = lib.mkOption {
        type = freeform;
        default = { };
      };
      systemd.services = lib.mkOption {
        type = freeform;
        default = { };
      };
      systemd.paths = lib.mkOption {
        type = freeform;
        default = { };
      };
      system.build = lib.mkOption {
        type = lib.types.attrsOf lib.types.anything;
        default = { };
      };
      nix.package = lib.mkOption {
        type = lib.types.anything;
        default = "/nix/store/00000000000000000000000000000000-nix";
      };
      networking.firewall.allowedTCPPorts = lib.mkOption {
        type = lib.types.listOf lib.types.port;
        default = [ ];
      };
      networking.firewall.allowedUDPPorts = lib.mkOption {
        type = lib.types.listOf lib.types.port;
        default = [ ];
      };
    };
  };

  # What the module uses of nixpkgs, as plain values: store paths are names, files are
  # not written.
  standInPkgs = {
    formats.toml =
      { }:
      {
        type =
          let
            value =
              lib.types.nullOr (
                lib.types.oneOf [
                  lib.types.bool
                  lib.types.int
                  lib.types.float
                  lib.types.str
                  lib.types.path
                  (lib.types.attrsOf value)
                  (lib.types.listOf value)
                ]
              )
              // {
                description = "TOML value";
              };
          in
          lib.types.attrsOf value;
        generate = name: _value: "/nix/store/00000000000000000000000000000000-${name}";
      };
    runCommand = name: _env: _script: "/nix/store/00000000000000000000000000000000-${name}";
    gitMinimal = "/nix/store/00000000000000000000000000000000-git";
    coreutils = "/nix/store/00000000000000000000000000000000-coreutils";
    # The text is forced, so a script that does not evaluate fails here too.
    writeShellScript = name: text: {
      inherit name text;
      outPath = builtins.seq (builtins.stringLength text) "/nix/store/00000000000000000000000000000000-${name}";
    };
  };

  standInPackage = {
    name = "sn2";
    outPath = "/nix/store/00000000000000000000000000000000-sn2";
    meta.mainProgram = "sn2";
    type = "derivation";
  };

  evaluate =
    settings:
    (lib.evalModules {
      modules = [
        nixosStubs
        ../modules/sn2.nix
        {
          services.sn2.package = standInPackage;
          system.build.nixos-rebuild = "/nix/store/00000000000000000000000000000000-nixos-rebuild";
        }
        settings
      ];
      specialArgs.pkgs = standInPkgs;
    }).config;

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  # A host running both daemons, as the README's example configures it.
  both = evaluate {
    services.sn2 = {
      enable = true;
      models.digits-mlp.onnx = "/nix/store/00000000000000000000000000000000-sn2/share/sn2/models/digits-mlp/model.onnx";
      miner = {
        enable = true;
        hotkeyFile = "/var/lib/secrets/sn2/miner-hotkey";
        openFirewall = true;
        settings.miner.external_ip = "203.0.113.7";
      };
      validator = {
        enable = true;
        hotkeyFile = "/var/lib/secrets/sn2/validator-hotkey";
        openFirewall = true;
        settings.metrics.listen = "0.0.0.0:9100";
      };
    };
  };
  miner = both.systemd.services.sn2-miner.serviceConfig;
  validator = both.systemd.services.sn2-validator.serviceConfig;

  inStore = evaluate {
    services.sn2 = {
      enable = true;
      validator = {
        enable = true;
        hotkeyFile = "/nix/store/00000000000000000000000000000000-hotkey";
      };
    };
  };

  noRole = evaluate { services.sn2.enable = true; };

  # Signed releases in mode `nixos`, on the validator.
  updating =
    flake:
    evaluate {
      services.sn2 = {
        enable = true;
        validator = {
          enable = true;
          hotkeyFile = "/var/lib/secrets/sn2/validator-hotkey";
        };
        update = {
          mode = "nixos";
          manifest = "https://releases.example.org/sn2/stable.manifest";
          trustedKeys = [ "sn2-release-1:DE4Q7AplbwJp1Dy/cP1UJ4YGwRpSZOJ6h4GekFt2ME0=" ];
          inherit flake;
        };
      };
    };
  nixosMode = updating "/etc/nixos#node";

  disabled = evaluate {
    services.sn2 = {
      enable = false;
      miner.enable = true;
    };
  };

  expectations = {
    "both daemons pass the assertions" = failedAssertions both == [ ];
    "no warning when a daemon is enabled" = both.warnings == [ ];
    "units are notify services with a watchdog" =
      miner.Type == "notify" && validator.Type == "notify" && miner.WatchdogSec > 0;
    "units run as a dynamic user with a state directory" =
      miner.DynamicUser && miner.StateDirectory == "sn2-miner" && validator.StateDirectory == "sn2-validator";
    "the hotkey is a credential" = miner.LoadCredential == [ "hotkey:/var/lib/secrets/sn2/miner-hotkey" ];
    "the daemon reads the credential" =
      both.services.sn2.miner.settings.wallet.hotkey_file == "/run/credentials/sn2-miner.service/hotkey"
      && both.services.sn2.validator.settings.wallet.hotkey_file
        == "/run/credentials/sn2-validator.service/hotkey";
    "models and state live in the state directory" =
      both.services.sn2.validator.settings.models.dir == "/var/lib/sn2-validator/models"
      && both.services.sn2.validator.settings.validator.state_dir == "/var/lib/sn2-validator/state";
    "no core dumps (a setup's secrets stay in memory)" = miner.LimitCORE == 0 && validator.LimitCORE == 0;
    "the hardening set is complete" = lib.all (name: miner ? ${name}) [
      "NoNewPrivileges"
      "ProtectSystem"
      "ProtectHome"
      "PrivateTmp"
      "PrivateDevices"
      "RestrictAddressFamilies"
      "SystemCallFilter"
      "CapabilityBoundingSet"
    ]
    && miner.CapabilityBoundingSet == ""
    && miner.ProtectSystem == "strict";
    "models are imported before the start" = lib.length miner.ExecStartPre == 1;
    "the config is checked and started from the store" =
      lib.hasInfix "-sn2-miner.toml" miner.ExecStart && lib.hasPrefix "/nix/store/" miner.ExecStart;
    "operators find the configs in /etc/sn2" = both.environment.etc ? "sn2/miner.toml";
    "the firewall opens the miner port for QUIC and HTTP" =
      lib.elem 8091 both.networking.firewall.allowedUDPPorts
      && lib.elem 8091 both.networking.firewall.allowedTCPPorts;
    "the firewall opens the validator's own metrics port" =
      lib.elem 9100 both.networking.firewall.allowedTCPPorts
      && !(lib.elem 9090 both.networking.firewall.allowedTCPPorts);
    "an operator's setting wins over the module's default" =
      both.services.sn2.validator.settings.metrics.listen == "0.0.0.0:9100";
    "miner and validator metrics do not collide" =
      both.services.sn2.miner.settings.metrics.listen == "0.0.0.0:9091";
    "a hotkey in the store is refused" = lib.any (lib.hasInfix "is in the Nix store") (
      failedAssertions inStore
    );
    "enable without a daemon warns" = lib.length noRole.warnings == 1 && noRole.systemd.services == { };
    "nothing runs unless services.sn2.enable" = disabled.systemd.services == { };
    "updates are off unless asked for" = !(both.services.sn2.validator.settings ? update);
    "the update settings reach the daemon" =
      let
        update = nixosMode.services.sn2.validator.settings.update;
      in
      update.mode == "nixos"
      && update.state_dir == "/var/lib/sn2-validator/update"
      && update.trusted_keys == [ "sn2-release-1:DE4Q7AplbwJp1Dy/cP1UJ4YGwRpSZOJ6h4GekFt2ME0=" ]
      && update.poll_interval_secs == 300;
    "mode nixos has an upgrade unit woken by the hand-over" =
      nixosMode.systemd.services ? sn2-upgrade
      && nixosMode.systemd.services.sn2-upgrade.serviceConfig.Type == "oneshot"
      && lib.hasSuffix "-sn2-upgrade" nixosMode.systemd.services.sn2-upgrade.serviceConfig.ExecStart
      && nixosMode.systemd.paths.sn2-upgrade.pathConfig.PathChanged == [
        "/var/lib/private/sn2-validator/update/verified-release.manifest"
      ];
    "mode nixos without a flake is refused" = lib.any (lib.hasInfix "needs services.sn2.update.flake") (
      failedAssertions (updating null)
    );
    "no upgrade unit unless mode nixos" = !(both.systemd.services ? sn2-upgrade);
  };

  failed = lib.attrNames (lib.filterAttrs (_: ok: !ok) expectations);
in
if failed != [ ] then
  throw "module expectations failed: ${lib.concatStringsSep "; " failed}"
else
  {
    passed = lib.attrNames expectations;
    settings = {
      miner = both.services.sn2.miner.settings;
      validator = both.services.sn2.validator.settings;
      validator-updating = nixosMode.services.sn2.validator.settings;
    };
    serviceConfig = { inherit miner validator; };
  }
