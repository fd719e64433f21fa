"""Repository hosts: where project repositories live (local bare repositories, or GitHub)."""
