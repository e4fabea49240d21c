FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhirstudy ./fhirstudy
COPY seeds ./seeds
RUN pip install --no-cache-dir -e '.[postgres]'
EXPOSE 8080
CMD ["sh", "-c", "fhirstudy load seeds --db \"$DATABASE_URL\" --quiet && fhirstudy serve --host 0.0.0.0 --port 8080 --db \"$DATABASE_URL\""]
