"""The infra department: runs Ansible jobs (deploy, undeploy, provision, ping) for the graphs and the scheduler."""
