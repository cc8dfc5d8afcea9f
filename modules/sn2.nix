# The NixOS module of sn2: `services.sn2.miner` and `services.sn2.validator`, each a
# hardened systemd service driven by one TOML file. The file is rendered from `settings`
# and checked with `sn2 config check` when the system is built, so a bad option fails
# `nixos-rebuild`, not the service. The wallet hotkey reaches the daemon as a systemd
# credential and never enters the Nix store.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.sn2;
  toml = pkgs.formats.toml { };

  roles = {
    miner = {
      binary = "sn2-miner";
      description = "sn2 miner (Bittensor Subnet 2, Proof of Inference)";
    };
    validator = {
      binary = "sn2-validator";
      description = "sn2 validator (Bittensor Subnet 2, Proof of Inference)";
    };
  };

  unit = role: "sn2-${role}";
  stateDir = role: "/var/lib/${unit role}";
  # Where systemd puts the credential named `hotkey` for the unit ($CREDENTIALS_DIRECTORY).
  credentialPath = role: "/run/credentials/${unit role}.service/hotkey";

  # The port of a "host:port" or "[v6]:port" listen address.
  portOf = address: lib.toInt (lib.last (lib.splitString ":" address));

  # The rendered settings, checked by the package's own parser at build time.
  configFile =
    role:
    let
      rendered = toml.generate "${unit role}.toml" cfg.${role}.settings;
    in
    pkgs.runCommand "${unit role}.toml"
      {
        nativeBuildInputs = [ cfg.package ];
        preferLocalBuild = true;
      }
      ''
        if ! sn2 config check --role ${role} ${rendered} > /dev/null; then
          echo "services.sn2.${role}.settings do not make a valid sn2 config (see above)" >&2
          exit 1
        fi
        cp ${rendered} $out
      '';

  # Imports `services.sn2.models` into the role's models directory before each start;
  # importing a model that is already there changes nothing, and a new file under the same
  # name replaces the old model (`--replace`; its keys are made again).
  importModels =
    role:
    pkgs.writeShellScript "${unit role}-import-models" (
      lib.concatStrings (
        lib.mapAttrsToList (name: model: ''
          ${lib.getExe' cfg.package "sn2"} model import ${lib.escapeShellArg model.onnx} \
            --name ${lib.escapeShellArg name} \
            ${lib.optionalString (
              model.calibration != null
            ) "--calibration ${lib.escapeShellArg model.calibration}"} \
            --replace --config ${configFile role} > /dev/null
        '') cfg.models
      )
    );

  modelOptions = {
    options = {
      onnx = lib.mkOption {
        type = lib.types.path;
        description = "The model's ONNX file.";
      };
      calibration = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        description = ''
          Calibration inputs (`{"inputs": [[...], ...]}`) for quantisation; null takes 64 fixed
          pseudo-random inputs.
        '';
      };
    };
  };

  roleOptions = role: {
    enable = lib.mkEnableOption roles.${role}.description;

    settings = lib.mkOption {
      type = lib.types.submodule { freeformType = toml.type; };
      default = { };
      example = lib.literalExpression (
        if role == "miner" then
          ''
            {
              chain.network = "finney";
              miner.external_ip = "203.0.113.7";
            }
          ''
        else
          ''
            {
              chain.network = "finney";
              validator.key_server = "203.0.113.9:9090";
            }
          ''
      );
      description = ''
        The daemon's configuration, as in `config.example.toml` of the sn2 package
        (`share/sn2/config.example.toml`). The module sets the wallet, models and state
        paths; every other key keeps the daemon's default unless set here.
      '';
    };

    hotkeyFile = lib.mkOption {
      type = lib.types.str;
      example = "/var/lib/secrets/sn2/${role}-hotkey";
      description = ''
        The wallet's hotkey file (unencrypted JSON, as btcli writes it to
        `~/.bittensor/wallets/NAME/hotkeys/HOTKEY`), given as a string so that it is not
        copied into the world-readable Nix store. systemd hands it to the daemon as the
        credential `hotkey`; the file itself may be readable by root alone.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description =
        if role == "miner" then
          "Open the miner's listen port (UDP for QUIC, TCP for HTTP) in the firewall."
        else
          "Open the validator's metrics port, where miners fetch its proving keys, in the firewall.";
    };
  };

  roleDefaults = role: {
    wallet.hotkey_file = lib.mkDefault (credentialPath role);
    models.dir = lib.mkDefault "${stateDir role}/models";
    logging.level = lib.mkDefault "info";
    update = lib.mkIf (cfg.update.mode != "off") (
      lib.mapAttrs (_: lib.mkDefault) (
        {
          mode = cfg.update.mode;
          trusted_keys = cfg.update.trustedKeys;
          channel = cfg.update.channel;
          poll_interval_secs = cfg.update.pollInterval;
          state_dir = "${stateDir role}/update";
        }
        // lib.optionalAttrs (cfg.update.manifest != null) { manifest = cfg.update.manifest; }
      )
    );
  };

  # Where a daemon in mode `nixos` hands a verified manifest over (DynamicUser keeps its
  # state under /var/lib/private).
  handoverFile = role: "/var/lib/private/${unit role}/update/verified-release.manifest";

  # Verifies the newest handed-over manifest again, then rebuilds the system with sn2's
  # input pinned to the release's revision.
  upgradeScript = pkgs.writeShellScript "sn2-upgrade" ''
    set -euo pipefail
    newest=""
    for candidate in ${lib.concatMapStringsSep " " (role: lib.escapeShellArg (handoverFile role)) enabledRoles}; do
      if [ -e "$candidate" ] && { [ -z "$newest" ] || [ "$candidate" -nt "$newest" ]; }; then
        newest=$candidate
      fi
    done
    if [ -z "$newest" ]; then
      echo "no verified release handed over yet"
      exit 0
    fi
    ref=$(${lib.getExe' cfg.package "sn2"} release verify "$newest" --print-flake-ref \
      --config ${configFile (lib.head enabledRoles)})
    echo "switching to $ref"
    exec ${config.system.build.nixos-rebuild}/bin/nixos-rebuild switch \
      --flake ${lib.escapeShellArg (toString cfg.update.flake)} \
      --override-input ${lib.escapeShellArg cfg.update.input} "$ref"
  '';

  service =
    role:
    let
      roleCfg = cfg.${role};
    in
    {
      description = roles.${role}.description;
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ (configFile role) ];

      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        # The daemon pings the watchdog at half this interval.
        WatchdogSec = 60;
        ExecStartPre = lib.optional (cfg.models != { }) "${importModels role}";
        ExecStart = "${lib.getExe' cfg.package roles.${role}.binary} --config ${configFile role}";
        # A validator's first start makes its own keys for every model, which can take
        # minutes for a large one.
        TimeoutStartSec = "15min";
        Restart = "on-failure";
        RestartSec = 5;
        TimeoutStopSec = 30;

        DynamicUser = true;
        StateDirectory = unit role;
        StateDirectoryMode = "0700";
        WorkingDirectory = stateDir role;
        Environment = [ "HOME=${stateDir role}" ];
        LoadCredential = [ "hotkey:${roleCfg.hotkeyFile}" ];
        UMask = "0077";

        # Hardening: the daemon needs its state directory, IPv4/IPv6 sockets and the
        # notify socket, nothing else.
        NoNewPrivileges = true;
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        PrivateUsers = true;
        PrivateMounts = true;
        DevicePolicy = "closed";
        ProtectClock = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RemoveIPC = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
          "~@resources"
        ];
        SystemCallErrorNumber = "EPERM";
        # No core dumps: ark-groth16 leaves a setup's secret values (toxic waste) in
        # memory, and a validator's core dumped during setup would hand them out.
        LimitCORE = 0;
      };
    };

  enabledRoles = lib.filter (role: cfg.enable && cfg.${role}.enable) (lib.attrNames roles);
in
{
  options.services.sn2 = {
    enable = lib.mkEnableOption "sn2, Bittensor Subnet 2 (Proof of Inference): the `sn2` tool and the daemons enabled below";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The sn2 package (the flake's `packages.sn2` when the module comes from the flake).";
    };

    models = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule modelOptions);
      default = { };
      example = lib.literalExpression ''
        {
          digits-mlp = {
            onnx = "''${config.services.sn2.package}/share/sn2/models/digits-mlp/model.onnx";
            calibration = "''${config.services.sn2.package}/share/sn2/models/digits-mlp/calibration.json";
          };
        }
      '';
      description = ''
        ONNX models, by name, imported into each daemon's models directory before it starts.
        A validator makes its own proving and verifying keys for them on first start; a miner
        fetches the validator's proving key. The sn2 package carries the reference models in
        `share/sn2/models`.
      '';
    };

    miner = roleOptions "miner";
    validator = roleOptions "validator";

    update = {
      mode = lib.mkOption {
        type = lib.types.enum [
          "off"
          "notify"
          "nixos"
        ];
        default = "off";
        description = ''
          What the daemons do about signed releases: `notify` logs, sets the
          `sn2_update_available` metric and the unit's status when a newer verified release
          exists; `nixos` also hands it to `sn2-upgrade.service`, which verifies it again
          and runs `nixos-rebuild switch` with sn2's flake input pinned to the release's
          revision. (The daemon mode `profile` is for installs outside NixOS.)
        '';
      };
      manifest = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "https://releases.example.org/sn2/stable.manifest";
        description = "The signed release manifest: an https:// URL or a file path.";
      };
      trustedKeys = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        example = [ "sn2-release-1:DE4Q7AplbwJp1Dy/cP1UJ4YGwRpSZOJ6h4GekFt2ME0=" ];
        description = "Nix-format public keys (NAME:BASE64) whose signatures are trusted; several allow rotation.";
      };
      channel = lib.mkOption {
        type = lib.types.str;
        default = "stable";
        description = "The release channel followed.";
      };
      pollInterval = lib.mkOption {
        type = lib.types.ints.positive;
        default = 300;
        description = "Seconds between two reads of the manifest.";
      };
      flake = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "/etc/nixos#sn2-node";
        description = "Mode `nixos`: the system's flake and configuration that `nixos-rebuild switch --flake` builds.";
      };
      input = lib.mkOption {
        type = lib.types.str;
        default = "sn2";
        description = "Mode `nixos`: the name of sn2's input in that flake, pinned to each release's revision.";
      };
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        environment.systemPackages = [ cfg.package ];
        warnings = lib.optional (
          enabledRoles == [ ]
        ) "services.sn2.enable is set but neither services.sn2.miner nor services.sn2.validator is enabled.";
        assertions = lib.concatMap (role: [
          {
            assertion = lib.hasPrefix "/" cfg.${role}.hotkeyFile;
            message = "services.sn2.${role}.hotkeyFile must be an absolute path, not `${cfg.${role}.hotkeyFile}`.";
          }
          {
            assertion = !lib.hasPrefix builtins.storeDir cfg.${role}.hotkeyFile;
            message = "services.sn2.${role}.hotkeyFile is in the Nix store, where every user can read it; keep the hotkey outside it.";
          }
        ]) enabledRoles
        ++ [
          {
            assertion = cfg.update.mode != "nixos" || cfg.update.flake != null;
            message = "services.sn2.update.mode = \"nixos\" needs services.sn2.update.flake (e.g. \"/etc/nixos#${config.networking.hostName or "node"}\").";
          }
        ];
      }

      (lib.mkIf (cfg.update.mode == "nixos" && enabledRoles != [ ]) {
        systemd.services.sn2-upgrade = {
          description = "Switch to the signed sn2 release the daemons verified";
          restartIfChanged = false;
          unitConfig.X-StopOnRemoval = false;
          path = [
            config.nix.package
            pkgs.gitMinimal
            pkgs.coreutils
          ];
          serviceConfig = {
            Type = "oneshot";
            ExecStart = "${upgradeScript}";
          };
        };
        systemd.paths.sn2-upgrade = {
          wantedBy = [ "multi-user.target" ];
          pathConfig.PathChanged = map handoverFile enabledRoles;
        };
      })

      (lib.mkIf cfg.miner.enable {
        services.sn2.miner.settings = roleDefaults "miner" // {
          # Beside a validator on the same host, the miner's metrics need their own port.
          metrics.listen = lib.mkDefault "0.0.0.0:9091";
        };
        systemd.services.sn2-miner = service "miner";
        environment.etc."sn2/miner.toml".source = configFile "miner";
        networking.firewall = lib.mkIf cfg.miner.openFirewall (
          let
            port = portOf (cfg.miner.settings.miner.listen or "0.0.0.0:8091");
          in
          {
            allowedTCPPorts = [ port ];
            allowedUDPPorts = [ port ];
          }
        );
      })

      (lib.mkIf cfg.validator.enable {
        services.sn2.validator.settings = roleDefaults "validator" // {
          validator.state_dir = lib.mkDefault "${stateDir "validator"}/state";
        };
        systemd.services.sn2-validator = service "validator";
        environment.etc."sn2/validator.toml".source = configFile "validator";
        networking.firewall = lib.mkIf cfg.validator.openFirewall {
          allowedTCPPorts = [ (portOf (cfg.validator.settings.metrics.listen or "0.0.0.0:9090")) ];
        };
      })
    ]
  );
}
