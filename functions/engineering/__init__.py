"""The engineering department: spec + repository -> scaffold -> developer -> tester -> commit / branch / PR."""
