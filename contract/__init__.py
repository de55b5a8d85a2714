"""What every stage agrees on: imported by preprocessing, trainer and deploy, importing none."""
