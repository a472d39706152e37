"""The public corpus: real TF models that judge fxsurgeon's generality (README "Scoreboard")."""
