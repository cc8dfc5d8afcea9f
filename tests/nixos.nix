# NixOS VM test (the flake's `checks.<system>.vm`): a validator and a miner, each on its own
# machine, on a devnet configuration: the local chain backend, a fixed metagraph of the two
# hotkeys, no subtensor. The module imports the reference model digits-mlp on both; the
# validator makes its keys, the miner fetches the proving key over the test network, proves
# over QUIC, and the test passes once the validator has verified a proof.
#
# The two hotkeys in tests/data/nixos are throwaway keys made for this test only.
{ pkgs, module }:
let
  inherit (pkgs) lib;
  hotkey = role: lib.importJSON ./data/nixos/${role}-hotkey.json;

  node =
    role:
    { config, nodes, ... }:
    let
      package = config.services.sn2.package;
    in
    {
      imports = [ module ];
      virtualisation.memorySize = 2048;
      environment.systemPackages = [ pkgs.curl ];

      # As an operator would: the hotkey lives outside the Nix store, readable by root only.
      environment.etc."sn2-test/hotkey" = {
        source = ./data/nixos/${role}-hotkey.json;
        mode = "0400";
      };

      services.sn2 = {
        enable = true;
        models.digits-mlp = {
          onnx = "${package}/share/sn2/models/digits-mlp/model.onnx";
          calibration = "${package}/share/sn2/models/digits-mlp/calibration.json";
        };
        ${role} = {
          enable = true;
          hotkeyFile = "/etc/sn2-test/hotkey";
          openFirewall = true;
          settings = {
            chain = {
              backend = "local";
              neurons = [
                {
                  uid = 0;
                  hotkey = (hotkey "validator").ss58Address;
                  # Its key server: the miner fetches proving keys from here only.
                  axon = "${nodes.validator.networking.primaryIPAddress}:9090";
                  validator_permit = true;
                  stake = 1000.0;
                }
                {
                  uid = 1;
                  hotkey = (hotkey "miner").ss58Address;
                  axon = "${nodes.miner.networking.primaryIPAddress}:8091";
                  validator_permit = false;
                  stake = 0.0;
                }
              ];
            };
            validator = {
              round_interval_secs = 2;
              sample_size = 1;
            };
          };
        };
      };
    };
in
pkgs.testers.runNixOSTest {
  name = "sn2";
  nodes = {
    validator = node "validator";
    miner = node "miner";
  };

  testScript = ''
    start_all()
    validator.wait_for_unit("sn2-validator.service")
    miner.wait_for_unit("sn2-miner.service")

    with subtest("the validator verifies the miner's proofs"):
        validator.wait_until_succeeds(
            "curl -sf http://127.0.0.1:9090/metrics | grep -E '^sn2_proofs_verified_total [1-9]'",
            timeout=600,
        )
        miner.succeed("curl -sf http://127.0.0.1:9091/health | grep -F '\"role\":\"miner\"'")

    with subtest("the daemons run unprivileged, with the hotkey as a credential"):
        for machine, role in [(validator, "validator"), (miner, "miner")]:
            unit = f"sn2-{role}"
            machine.succeed(f"systemctl show -p DynamicUser {unit} | grep -Fx DynamicUser=yes")
            machine.succeed(f"test -d /var/lib/private/{unit}/models")
            machine.succeed(f"grep -F /run/credentials/{unit}.service/hotkey /etc/sn2/{role}.toml")
            machine.succeed(f"systemd-analyze security --threshold=20 {unit}.service")

    with subtest("a restart keeps the validator's keys and scores"):
        before = validator.succeed("sha256sum /var/lib/private/sn2-validator/models/*/keys/*")
        validator.systemctl("restart sn2-validator.service")
        validator.wait_for_unit("sn2-validator.service")
        after = validator.succeed("sha256sum /var/lib/private/sn2-validator/models/*/keys/*")
        assert before == after, "the validator made new keys on restart"
  '';
}
