# The seed's PynomalyAPIClient, copied verbatim from
# shared/seed/ml-engineer-guide.md ("RESTful API Client"). It is our users' code: do not
# edit it. The integration test checks that it still matches the guide.
# --- verbatim from the guide below this line ---
import httpx
import asyncio
from typing import List, Dict, Any, Optional
from pydantic import BaseModel
import logging

class PynomalyAPIClient:
    """Production-ready API client with comprehensive error handling."""
    
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry_delay: float = 1.0
    ):
        self.base_url = base_url.rstrip('/')
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        
        self.session = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "User-Agent": "pynomaly-client/1.0"
            }
        )
        
        self.logger = logging.getLogger(__name__)
        
    async def __aenter__(self):
        return self
        
    async def __aexit__(self, exc_type, exc_val, exc_tb):
        await self.session.aclose()
        
    async def _make_request(
        self,
        method: str,
        endpoint: str,
        data: Optional[Dict[str, Any]] = None,
        params: Optional[Dict[str, Any]] = None
    ) -> Dict[str, Any]:
        """Make HTTP request with retry logic and error handling."""
        
        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        
        for attempt in range(self.max_retries + 1):
            try:
                response = await self.session.request(
                    method=method,
                    url=url,
                    json=data,
                    params=params
                )
                
                if response.status_code == 429:  # Rate limited
                    retry_after = int(response.headers.get('Retry-After', self.retry_delay))
                    self.logger.warning(f"Rate limited, waiting {retry_after}s")
                    await asyncio.sleep(retry_after)
                    continue
                    
                response.raise_for_status()
                return response.json()
                
            except httpx.HTTPStatusError as e:
                if e.response.status_code < 500 or attempt == self.max_retries:
                    self.logger.error(f"HTTP error {e.response.status_code}: {e.response.text}")
                    raise
                    
                self.logger.warning(f"Attempt {attempt + 1} failed, retrying in {self.retry_delay}s")
                await asyncio.sleep(self.retry_delay * (2 ** attempt))  # Exponential backoff
                
            except (httpx.ConnectTimeout, httpx.ReadTimeout) as e:
                if attempt == self.max_retries:
                    self.logger.error(f"Timeout error: {e}")
                    raise
                    
                self.logger.warning(f"Timeout on attempt {attempt + 1}, retrying")
                await asyncio.sleep(self.retry_delay)
                
        raise Exception(f"Max retries ({self.max_retries}) exceeded")
    
    async def detect_anomalies(
        self,
        data: List[List[float]],
        algorithm: str = "isolation_forest",
        contamination: float = 0.1,
        **kwargs
    ) -> Dict[str, Any]:
        """Detect anomalies in provided data."""
        
        request_data = {
            "data": data,
            "algorithm": algorithm,
            "contamination": contamination,
            **kwargs
        }
        
        return await self._make_request("POST", "/api/v1/detect", data=request_data)
    
    async def batch_detect(
        self,
        data_source: str,
        algorithm: str = "isolation_forest",
        output_format: str = "json",
        **kwargs
    ) -> Dict[str, Any]:
        """Submit batch detection job."""
        
        request_data = {
            "data_source": data_source,
            "algorithm": algorithm,
            "output_format": output_format,
            **kwargs
        }
        
        return await self._make_request("POST", "/api/v1/batch", data=request_data)
    
    async def get_job_status(self, job_id: str) -> Dict[str, Any]:
        """Get status of batch job."""
        return await self._make_request("GET", f"/api/v1/jobs/{job_id}")
    
    async def train_model(
        self,
        training_data: str,
        algorithm: str,
        model_name: str,
        **kwargs
    ) -> Dict[str, Any]:
        """Train and persist a model."""
        
        request_data = {
            "training_data": training_data,
            "algorithm": algorithm,
            "model_name": model_name,
            **kwargs
        }
        
        return await self._make_request("POST", "/api/v1/models", data=request_data)
    
    async def predict_with_model(
        self,
        model_name: str,
        data: List[List[float]]
    ) -> Dict[str, Any]:
        """Make predictions using a trained model."""
        
        request_data = {
            "data": data
        }
        
        return await self._make_request(
            "POST", 
            f"/api/v1/models/{model_name}/predict", 
            data=request_data
        )
    
    async def health_check(self) -> Dict[str, Any]:
        """Check API health status."""
        return await self._make_request("GET", "/health")
