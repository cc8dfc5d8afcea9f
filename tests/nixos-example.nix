# The NixOS configuration README.md shows: a miner and a validator on Subnet 2 of finney.
# The flake's `checks.<system>.module-units` builds its units, so the example keeps working.
{ config, ... }:
let
  models = "${config.services.sn2.package}/share/sn2/models";
in
{
  services.sn2 = {
    enable = true;

    # Imported into each daemon's models directory before it starts.
    models.digits-mlp = {
      onnx = "${models}/digits-mlp/model.onnx";
      calibration = "${models}/digits-mlp/calibration.json";
    };

    miner = {
      enable = true;
      # btcli's hotkey file, copied here by the operator (mode 0400, owned by root).
      hotkeyFile = "/var/lib/secrets/sn2/miner-hotkey";
      openFirewall = true;
      settings = {
        chain.network = "finney";
        miner.external_ip = "203.0.113.7";
      };
    };

    validator = {
      enable = true;
      hotkeyFile = "/var/lib/secrets/sn2/validator-hotkey";
      openFirewall = true;
      settings = {
        chain.network = "finney";
        validator.key_server = "203.0.113.7:9090";
      };
    };
  };
}
