{
  # agents.py is one standard-library Python file: this flake only puts it on PATH with the
  # tools it drives. No flake.lock is committed yet: it can only be computed honestly on a
  # machine with nix, which the project's CI machines do not have.
  description = "agents.py: run a team of terminal coding agents in tmux, unattended";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in {
      packages = forAll (pkgs: {
        default = pkgs.stdenvNoCC.mkDerivation {
          pname = "agents-py";
          version = "0.1.0";
          src = ./.;
          nativeBuildInputs = [ pkgs.makeWrapper ];
          installPhase = ''
            mkdir -p $out/share/agents-py $out/bin
            cp agents.py agent-log.py $out/share/agents-py/
            makeWrapper ${pkgs.python311}/bin/python3 $out/bin/agents.py \
              --add-flags $out/share/agents-py/agents.py \
              --prefix PATH : ${pkgs.lib.makeBinPath [ pkgs.tmux pkgs.git ]}
            makeWrapper ${pkgs.python311}/bin/python3 $out/bin/agent-log.py \
              --add-flags $out/share/agents-py/agent-log.py
          '';
        };
      });
      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.python311 pkgs.python311Packages.pytest pkgs.tmux pkgs.git pkgs.nodejs_22 ];
        };
      });
    };
}
